/**
 * The agent's access token, for multi's calls to the server (children created and cancelled as
 * the agent). The agent feeds it on a pipe whose descriptor TESTFLINGER_SERVER_TOKEN_FD names,
 * to multi's provision and cleanup phases only: one token a line, a newer one each time the
 * agent's is renewed. Without that descriptor (or when the agent closes it at once: it has no
 * token) the calls carry no credentials, as upstream's multi sends none.
 */
import * as net from 'node:net';
import { SERVER_TOKEN_FD_ENV } from '../../../common/contract';

/** How long the first call waits for the agent's first line. */
const FIRST_TOKEN_WAIT_MS = 10_000;
/** A token as the agent's client accepts one: printable ASCII, no spaces; bounded. */
const TOKEN = /^[\x21-\x7e]{1,8192}$/;
const MAX_PENDING = 16 * 1024;

export class AgentToken {
  private latest: string | undefined;
  private ended = false;
  private pending = '';
  private readonly waiters = new Set<() => void>();
  private readonly pipe: net.Socket;

  /** The pipe the agent gave this phase, if it gave one. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): AgentToken | undefined {
    const value = env[SERVER_TOKEN_FD_ENV];
    if (value === undefined || !/^([3-9]|[1-9][0-9]{1,3})$/.test(value)) return undefined;
    try {
      return new AgentToken(Number(value));
    } catch {
      return undefined; // not open: no credentials
    }
  }

  private constructor(fd: number) {
    this.pipe = new net.Socket({ fd, readable: true, writable: false });
    // The pipe never keeps the connector alive on its own.
    this.pipe.unref();
    this.pipe.on('data', (chunk: Buffer) => this.take(chunk.toString('latin1')));
    const end = () => {
      this.ended = true;
      this.wake();
    };
    this.pipe.on('end', end);
    this.pipe.on('error', end);
  }

  private take(text: string): void {
    const lines = (this.pending + text).split('\n');
    this.pending = (lines.pop() ?? '').slice(0, MAX_PENDING);
    for (const line of lines) if (TOKEN.test(line)) this.latest = line;
    if (this.latest !== undefined) this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The newest token the agent gave; the first call waits (bounded) for one. */
  async current(): Promise<string | undefined> {
    if (this.latest !== undefined || this.ended) return this.latest;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, FIRST_TOKEN_WAIT_MS);
      this.waiters.add(done);
    });
    return this.latest;
  }

  close(): void {
    this.pipe.destroy();
  }
}
