/**
 * The Testflinger server's v1 API as the agent uses it: one cookie jar (the server refuses
 * `GET /v1/job` without the agent_name cookie it sets), Bearer tokens from the refresh-token
 * flow, and retries with backoff on connection errors and 5xx.
 */
import * as fs from 'node:fs';
import { z } from 'zod';
import { TOKEN_FD_ENV } from '../common/contract';
import type { Clock } from './clock';
import { BodyTooLargeError, nodeHttpTransport, type HttpTransport } from './http';

export class ServerError extends Error {
  override readonly name = 'ServerError';
  constructor(
    readonly method: string,
    readonly path: string,
    /** Undefined when the server could not be reached at all. */
    readonly status: number | undefined,
    /** The server's words or the transport's; shown quoted, as the server chose them. */
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${method} ${path}: ${status === undefined ? 'unreachable' : `HTTP ${status}`}${detail ? ` (${JSON.stringify(detail)})` : ''}`, options);
  }
  /** Connection errors, timeouts and 5xx may succeed later; 4xx and oversized replies will not. */
  get retryable(): boolean {
    if (this.cause instanceof BodyTooLargeError) return false;
    return this.status === undefined || this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** The server's answer to a token refresh, checked before the token is used or cached. */
const accessTokenSchema = z.object({
  access_token: z.string().regex(/^[\x21-\x7e]+$/, 'not a token'),
  expires_in: z.number().positive(),
});

export interface RetryPolicy {
  attempts: number;
  firstDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, firstDelayMs: 250, maxDelayMs: 2000 };
export const NO_RETRY: RetryPolicy = { attempts: 1, firstDelayMs: 0, maxDelayMs: 0 };
const REQUEST_TIMEOUT_MS = 30_000;
/** Refresh the access token this long before it expires. */
export const DEFAULT_TOKEN_MARGIN_MS = 30_000;

export interface RequestOptions {
  json?: unknown;
  /** A raw body with its content type (multipart uploads). */
  body?: { data: Buffer; contentType: string };
  query?: Record<string, string | string[]>;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  /** Statuses to hand back rather than throw. */
  accept?: number[];
  /** Cap of the reply kept in memory (the transport's default when unset). */
  maxBodyBytes?: number;
  /** Stream a 2xx reply to this file, up to maxBytes, instead of keeping it in memory. */
  download?: { file: string; maxBytes: number };
}

export interface Response {
  status: number;
  text: string;
  bytes: Buffer;
  json<T = unknown>(): T;
}

/** Longest token file read (the charm writes 4 KiB). */
const MAX_TOKEN_FILE = 64 * 1024;

function tokenFdFromEnv(): number | undefined {
  const value = process.env[TOKEN_FD_ENV];
  return value !== undefined && /^[0-9]{1,4}$/.test(value) ? Number(value) : undefined;
}

/**
 * The token file's text, or undefined when there is none (or it is blank: no token yet). Through
 * the descriptor when there is one, read from offset 0 each time (the charm rewrites it in place).
 */
function readStoredToken(file: string | undefined, fd: number | undefined): string | undefined {
  let text: string;
  if (fd !== undefined) {
    const buffer = Buffer.alloc(MAX_TOKEN_FILE);
    text = buffer.subarray(0, fs.readSync(fd, buffer, 0, buffer.length, 0)).toString('utf8');
  } else {
    if (!file || !fs.existsSync(file)) return undefined;
    text = fs.readFileSync(file, 'utf8');
  }
  return text.trim() === '' ? undefined : text;
}

export class TestflingerClient {
  private readonly cookies = new Map<string, string>();
  private accessToken: { value: string; expiresAt: number } | undefined;
  /** Requests made, by path, for the agent's own figures and tests. */
  requestCount = 0;

  constructor(
    readonly baseUrl: string,
    private readonly clock: Clock,
    private readonly options: {
      tokenFile?: string;
      /** A descriptor open on the token file (on a unit, from the root wrapper: the agent cannot open the file). */
      tokenFd?: number;
      transport?: HttpTransport;
      retry?: RetryPolicy;
      /** How long before its expiry an access token is replaced (DEFAULT_TOKEN_MARGIN_MS). */
      tokenMarginMs?: number;
    } = {},
  ) {}

  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const retry = options.retry ?? this.options.retry ?? DEFAULT_RETRY;
    let delay = retry.firstDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(method, path, options);
      } catch (error) {
        const retryable = error instanceof ServerError && error.retryable;
        if (!retryable || attempt >= retry.attempts || options.signal?.aborted) throw error;
        await this.clock.sleep(delay, options.signal);
        delay = Math.min(delay * 2, retry.maxDelayMs);
      }
    }
  }

  private async once(method: string, path: string, options: RequestOptions): Promise<Response> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(options.query ?? {})) for (const item of [v].flat()) url.searchParams.append(k, item);
    const headers: Record<string, string> = {};
    const token = path === '/v1/oauth2/refresh' ? undefined : await this.bearer(options.signal);
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (this.cookies.size > 0) headers['cookie'] = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: Buffer | undefined;
    if (options.body) {
      headers['content-type'] = options.body.contentType;
      body = options.body.data;
    }
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = Buffer.from(JSON.stringify(options.json));
    }
    this.requestCount++;
    let res;
    try {
      res = await (this.options.transport ?? nodeHttpTransport)(url, {
        method,
        headers,
        timeoutMs: REQUEST_TIMEOUT_MS,
        ...(body ? { body } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
        ...(options.download ? { download: options.download } : {}),
      });
    } catch (error) {
      throw new ServerError(method, path, undefined, (error as Error).message, { cause: error });
    }
    for (const cookie of res.setCookies) {
      const [pair = ''] = cookie.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const bytes = res.body;
    const text = bytes.toString('utf8');
    if (res.status >= 400 && !options.accept?.includes(res.status)) {
      if (res.status === 401) this.accessToken = undefined;
      throw new ServerError(method, path, res.status, text.slice(0, 200));
    }
    return { status: res.status, text, bytes, json: <T>() => (text ? JSON.parse(text) : null) as T };
  }

  /** The access token the agent's own calls use now (refreshed as they would), or none without a token file. */
  currentAccessToken(signal?: AbortSignal): Promise<string | undefined> {
    return this.bearer(signal);
  }

  /** The access token, refreshed from the token file's refresh token when it runs out. */
  private async bearer(signal?: AbortSignal): Promise<string | undefined> {
    const text = readStoredToken(this.options.tokenFile, this.options.tokenFd ?? tokenFdFromEnv());
    if (text === undefined) return undefined;
    const margin = this.options.tokenMarginMs ?? DEFAULT_TOKEN_MARGIN_MS;
    if (this.accessToken && this.accessToken.expiresAt - margin > this.clock.now()) return this.accessToken.value;
    const stored = JSON.parse(text) as { refresh_token?: string };
    if (!stored.refresh_token) return undefined;
    const res = await this.once('POST', '/v1/oauth2/refresh', { json: { refresh_token: stored.refresh_token }, ...(signal ? { signal } : {}) });
    const parsed = accessTokenSchema.safeParse(res.json());
    if (!parsed.success) throw new ServerError('POST', '/v1/oauth2/refresh', res.status, `unusable token reply: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const answer = parsed.data;
    this.accessToken = { value: answer.access_token, expiresAt: this.clock.now() + answer.expires_in * 1000 };
    return answer.access_token;
  }

  hasCookie(name: string): boolean {
    return this.cookies.has(name);
  }
}

