/**
 * HTTP with node:http(s) and keep-alive: what the client needs of fetch, at a fifth of its
 * memory (fetch pulls in undici, about 5 MB per idle agent). The server is not trusted with the
 * agent's memory: every reply body is capped, and large downloads go to a file under their own
 * cap instead of into memory.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';

/**
 * Default cap of a reply held in memory. Agent replies are kilobytes, but a job's result view
 * folds in its output (up to output_bytes, 10 MiB by default), so the cap sits above that.
 */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface HttpRequest {
  method: string;
  headers: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal;
  /** The whole exchange must end within this; for a download, the longest pause between chunks. */
  timeoutMs: number;
  /** Cap of a body kept in memory (DEFAULT_MAX_BODY_BYTES when unset). */
  maxBodyBytes?: number;
  /** A 2xx body is written to this file (0600, created anew) up to maxBytes, not kept in memory. */
  download?: { file: string; maxBytes: number };
}

export interface HttpResponse {
  status: number;
  setCookies: string[];
  /** Empty when the body went to a download file. */
  body: Buffer;
}

/** The reply was bigger than the agent accepts; retrying will not make it smaller. */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  constructor(limit: number) {
    super(`reply body exceeds the ${limit}-byte limit; request aborted`);
  }
}

export type HttpTransport = (url: URL, request: HttpRequest) => Promise<HttpResponse>;

const AGENT_OPTIONS: http.AgentOptions = { keepAlive: true, maxSockets: 4 };
const httpAgent = new http.Agent(AGENT_OPTIONS);
let httpsClient: { module: typeof import('node:https'); agent: http.Agent } | undefined;

/**
 * node:https is loaded on the first https URL: on Node 24 loading TLS costs every agent about
 * 2 MB of malloc'd memory, which an agent talking plain http never needs. Every connection
 * shares one TLS context (default roots, ciphers and versions, as each would make on its own):
 * otherwise each new connection, one a poll when the server closes idle ones, builds an OpenSSL
 * context of its own, which costs CPU and leaves malloc'd memory behind (measured on Node 24
 * over 20 connections: 0.35 ms more CPU each, 0.3 MB more kept after a full collection). The
 * server's certificate and name are still checked on every connection.
 */
function clientFor(url: URL): { module: typeof http | typeof import('node:https'); agent: http.Agent } {
  if (url.protocol !== 'https:') return { module: http, agent: httpAgent };
  if (!httpsClient) {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const module = require('node:https') as typeof import('node:https');
    const tls = require('node:tls') as typeof import('node:tls');
    /* eslint-enable @typescript-eslint/no-require-imports */
    httpsClient = { module, agent: new module.Agent({ ...AGENT_OPTIONS, secureContext: tls.createSecureContext() }) };
  }
  return httpsClient;
}

/** Where a reply's body goes: memory (capped) or a file (capped); `add` throws past the cap. */
interface BodySink {
  add(chunk: Buffer): void;
  finish(): Promise<Buffer>;
  abandon(): void;
}

function memorySink(limit: number): BodySink {
  const chunks: Buffer[] = [];
  let size = 0;
  return {
    add(chunk) {
      size += chunk.length;
      if (size > limit) throw new BodyTooLargeError(limit);
      chunks.push(chunk);
    },
    finish: async () => Buffer.concat(chunks),
    abandon() {
      chunks.length = 0;
    },
  };
}

function fileSink(file: string, limit: number): BodySink {
  fs.rmSync(file, { force: true });
  const out = fs.createWriteStream(file, { flags: 'wx', mode: 0o600 });
  let size = 0;
  return {
    add(chunk) {
      size += chunk.length;
      if (size > limit) throw new BodyTooLargeError(limit);
      out.write(chunk);
    },
    finish: () =>
      new Promise((resolve, reject) => {
        out.once('error', reject);
        out.end(() => resolve(Buffer.alloc(0)));
      }),
    abandon() {
      out.destroy();
      fs.rmSync(file, { force: true });
    },
  };
}

export const nodeHttpTransport: HttpTransport = (url, request) =>
  new Promise((resolve, reject) => {
    const client = clientFor(url);
    const headers = { ...request.headers, ...(request.body ? { 'content-length': String(request.body.length) } : {}) };
    let sink: BodySink | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const armTimer = () => {
      clearTimeout(timer);
      timer = setTimeout(() => req.destroy(new Error(`no answer within ${request.timeoutMs / 1000}s`)), request.timeoutMs);
    };
    const onAbort = () => req.destroy(new Error('aborted'));
    function cleanup() {
      settled = true;
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
    }
    function fail(error: Error) {
      if (settled) return;
      cleanup();
      sink?.abandon();
      reject(error);
    }
    /** Ends the exchange with this error (the socket is not reused: the rest is never read). */
    function refuse(error: Error) {
      fail(error);
      req.destroy();
    }
    const req = client.module.request(url, { method: request.method, headers, agent: client.agent }, (res) => {
      const status = res.statusCode ?? 0;
      const toFile = request.download && status >= 200 && status < 300 ? request.download : undefined;
      const limit = toFile?.maxBytes ?? request.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > limit) return refuse(new BodyTooLargeError(limit));
      try {
        sink = toFile ? fileSink(toFile.file, limit) : memorySink(limit);
      } catch (error) {
        return refuse(error as Error);
      }
      res.on('data', (chunk: Buffer) => {
        if (toFile) armTimer();
        try {
          sink?.add(chunk);
        } catch (error) {
          refuse(error as Error);
        }
      });
      res.on('end', () => {
        if (settled || !sink) return;
        sink.finish().then(
          (body) => {
            if (settled) return;
            cleanup();
            resolve({ status, setCookies: res.headers['set-cookie'] ?? [], body });
          },
          (error: Error) => fail(error),
        );
      });
      res.on('error', fail);
    });
    armTimer();
    req.on('error', fail);
    if (request.signal?.aborted) {
      req.destroy(new Error('aborted'));
      return;
    }
    request.signal?.addEventListener('abort', onAbort, { once: true });
    req.end(request.body);
  });

/** A multipart/form-data body with one file field. */
export function multipartBody(field: string, filename: string, contentType: string, data: Buffer): { body: Buffer; contentType: string } {
  const boundary = `----testflinger-${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`;
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${contentType}\r\n\r\n`;
  return { body: Buffer.concat([Buffer.from(head), data, Buffer.from(`\r\n--${boundary}--\r\n`)]), contentType: `multipart/form-data; boundary=${boundary}` };
}
