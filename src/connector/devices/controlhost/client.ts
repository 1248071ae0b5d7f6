/**
 * The control host's REST API, through Node's own fetch. Two limits per request, as upstream's
 * (connect, read) timeouts: the answer's headers must come within `headersSeconds`, and its body
 * may then fall silent for at most `readSeconds` between chunks. Connecting itself is bounded by
 * fetch's own connect timeout (10 s).
 */
import { ReadableStream } from 'node:stream/web';
import { ConnectorError } from '../../errors';
import { maskSecrets } from '../../../common/masker';
import { quoted } from '../../../common/text';

/** Upstream's connection timeout, and its timeout for plain requests. */
export const CONNECTION_TIMEOUT_SECONDS = 30;

export interface Limits {
  headersSeconds: number;
  readSeconds: number;
}

export const PLAIN_REQUEST: Limits = { headersSeconds: CONNECTION_TIMEOUT_SECONDS, readSeconds: CONNECTION_TIMEOUT_SECONDS };

/** The control host stayed silent longer than a read timeout: as upstream, the provisioning fails. */
export class SilenceError extends ConnectorError {
  override readonly name = 'SilenceError';
}

/** A timer that aborts its request unless re-armed; `rearm` after each chunk read. */
class Watchdog {
  readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  fired: string | undefined;

  arm(seconds: number, what: string): void {
    this.stop();
    this.timer = setTimeout(() => {
      this.fired = `the control host sent nothing for ${seconds}s (${what})`;
      this.controller.abort(new SilenceError(this.fired));
    }, seconds * 1000);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

/** A response whose body is read chunk by chunk under the read timeout. */
export interface ApiResponse {
  status: number;
  chunks(): AsyncGenerator<Uint8Array>;
  text(): Promise<string>;
  /** Stops reading and releases the connection. */
  close(): void;
}

function messageOf(error: unknown): string {
  return typeof error === 'object' && error !== null && 'message' in error ? String(error.message) : String(error);
}

/** fetch's errors say little ("fetch failed"); the cause says why (ECONNREFUSED, a timeout). */
function describeFailure(method: string, url: string, error: unknown): ConnectorError {
  if (error instanceof SilenceError) return error;
  const cause = typeof error === 'object' && error !== null && 'cause' in error && error.cause ? `: ${messageOf(error.cause)}` : '';
  return new ConnectorError(`${method} ${url} failed: ${messageOf(error)}${cause}`, { cause: error });
}

/** A refusal's reason: FastAPI's `detail` when the answer has one, else the answer's text; `secrets` masked. */
function refusalReason(answer: string, secrets: readonly string[]): string {
  // A refusal may quote the request back, as FastAPI's 422 does.
  const body = maskSecrets(answer, secrets);
  try {
    const detail = (JSON.parse(body) as { detail?: unknown }).detail;
    if (detail !== undefined) return quoted(typeof detail === 'string' ? detail : JSON.stringify(detail));
  } catch {
    // not JSON
  }
  return quoted(body.trim());
}

export class ControlHostApi {
  constructor(
    readonly baseUrl: string,
    private readonly secrets: readonly string[] = [],
  ) {}

  /** Sends a request; any answer but 2xx fails with the status and the start of the body. */
  async request(method: 'GET' | 'POST', endpoint: string, init: { body?: string | ReadableStream<Uint8Array>; headers?: Record<string, string>; limits?: Limits } = {}): Promise<ApiResponse> {
    const url = `${this.baseUrl}${endpoint}`;
    const limits = init.limits ?? PLAIN_REQUEST;
    const watchdog = new Watchdog();
    watchdog.arm(limits.headersSeconds, `waiting for the answer to ${method} ${endpoint}`);
    let res: Response;
    try {
      res = await fetch(url, { method, body: init.body, headers: init.headers, signal: watchdog.controller.signal, ...(init.body instanceof ReadableStream ? { duplex: 'half' } : {}) } as RequestInit);
    } catch (error) {
      watchdog.stop();
      throw describeFailure(method, url, watchdog.controller.signal.reason ?? error);
    }
    const response = this.wrap(res, watchdog, limits, `${method} ${endpoint}`);
    if (res.status < 200 || res.status > 299) {
      const body = await response.text().catch(() => '');
      throw new ConnectorError(`${method} ${url} answered HTTP ${res.status}: ${refusalReason(body, this.secrets)}`);
    }
    return response;
  }

  async json(method: 'GET' | 'POST', endpoint: string, body?: unknown): Promise<unknown> {
    const init = body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
    const text = await (await this.request(method, endpoint, init)).text();
    try {
      return JSON.parse(text);
    } catch {
      throw new ConnectorError(`${method} ${this.baseUrl}${endpoint} answered something not JSON: ${quoted(text)}`);
    }
  }

  private wrap(res: Response, watchdog: Watchdog, limits: Limits, what: string): ApiResponse {
    const reader = res.body?.getReader();
    async function* chunks(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) {
          watchdog.arm(limits.readSeconds, `reading ${what}`);
          const { done, value } = await (reader?.read() ?? Promise.resolve({ done: true as const, value: undefined }));
          if (done) return;
          yield value;
        }
      } catch (error) {
        if (watchdog.fired) throw new SilenceError(watchdog.fired);
        throw error;
      } finally {
        watchdog.stop();
      }
    }
    return {
      status: res.status,
      chunks,
      async text() {
        const decoder = new TextDecoder();
        let text = '';
        for await (const chunk of chunks()) text += decoder.decode(chunk, { stream: true });
        return text + decoder.decode();
      },
      close() {
        watchdog.stop();
        reader?.cancel().catch(() => undefined);
      },
    };
  }
}
