/**
 * An in-memory Testflinger server speaking the v1 API the agent uses, with the shapes recorded
 * from the real server (204 when there is no job, the agent_name cookie `GET /v1/job` needs,
 * Bearer tokens from /v1/oauth2/refresh, results folded into <phase>_status / <phase>_output),
 * plus what a user needs: submit, results, logs, artifacts, cancel, agent states.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PHASES } from '../common/contract';
import { multipartFile } from './multipart';

export interface DevServerOptions {
  port?: number;
  /**
   * When set, every call but `GET /v1` and the oauth2 ones needs a Bearer token; with
   * `restrictedQueues`, only submitting a job to one of them and cancelling such a job do (a
   * server whose restricted queues take jobs from authorised clients alone).
   */
  auth?: { clientId: string; secret: string; accessTtlS?: number; restrictedQueues?: string[] };
}

export interface StoredJob {
  id: string;
  queue: string;
  data: Record<string, unknown>;
  submittedAt: number;
  agent?: string;
}

interface Fragment {
  fragment_number: number;
  timestamp: string;
  phase: string;
  log_data: string;
  receivedAt: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
  agent: string | undefined;
  at: number;
}

export type Override = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}


export class DevServer {
  readonly jobs = new Map<string, StoredJob>();
  readonly pending: string[] = [];
  readonly results = new Map<string, Record<string, unknown>>();
  readonly logs = new Map<string, { output: Map<number, Fragment>; serial: Map<number, Fragment> }>();
  readonly artifacts = new Map<string, Buffer>();
  readonly attachments = new Map<string, Buffer>();
  readonly agents = new Map<string, Record<string, unknown>>();
  readonly advertisedQueues: Record<string, string> = {};
  readonly advertisedImages: Record<string, unknown> = {};
  readonly provisionLogs = new Map<string, unknown[]>();
  readonly jobEvents = new Map<string, unknown[]>();
  readonly requests: RequestRecord[] = [];
  private readonly refreshTokens = new Set<string>();
  private readonly accessTokens = new Map<string, number>();
  private server: http.Server | undefined;
  /** When set, every request gets this status (to play a failing server). */
  failWith: number | undefined;
  /** Replies that stand in for the real ones (to play a hostile or broken server). */
  private readonly overrides: { method: string; path: RegExp; times: number; reply: Override }[] = [];
  /** Turns of each agent's loop seen: its `GET /v1/agents/data/<name>`, made once per turn. */
  private readonly pollCounts = new Map<string, number>();
  /** Faults to play once each: the next `times` matching requests get `status`. */
  private readonly faults: { method: string; path: RegExp; status: number; times: number; body?: (body: Record<string, unknown>) => boolean }[] = [];

  /** Makes the next `times` requests matching method, path (and body, if given) fail with `status`. */
  failNext(method: string, path: RegExp, status: number, times = 1, body?: (body: Record<string, unknown>) => boolean): void {
    this.faults.push({ method, path, status, times, ...(body ? { body } : {}) });
  }

  private takeFault(method: string, path: string, body: Buffer): number | undefined {
    const parsed = () => {
      try {
        return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        return {};
      }
    };
    const fault = this.faults.find((f) => f.times > 0 && f.method === method && f.path.test(path) && (!f.body || f.body(parsed())));
    if (!fault) return undefined;
    fault.times--;
    return fault.status;
  }

  /**
   * The next `times` requests matching method and path are answered by `reply`, which writes
   * the raw response (any status, headers, size or pace), instead of the API.
   */
  override(method: string, path: RegExp, reply: Override, times = 1): void {
    this.overrides.push({ method, path, times, reply });
  }

  private takeOverride(method: string, path: string): Override | undefined {
    const found = this.overrides.find((o) => o.times > 0 && o.method === method && o.path.test(path));
    if (found) found.times--;
    return found?.reply;
  }

  /** Every access token issued so far (a test looks for them where they must not be). */
  issuedAccessTokens(): string[] {
    return [...this.accessTokens.keys()];
  }

  /** How many times the agent has come round its loop (see pollCounts). */
  polls(agent: string): number {
    return this.pollCounts.get(agent) ?? 0;
  }

  constructor(private readonly options: DevServerOptions = {}) {}

  get url(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (!address) throw new Error('dev server is not running');
    return `http://127.0.0.1:${address.port}`;
  }

  start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 1000;
    return new Promise((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(this.options.port ?? 0, '127.0.0.1', () => resolve(this.url));
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.closeAllConnections();
      this.server.close(() => resolve());
      this.server = undefined;
    });
  }

  // ---- what users (and tests) do ----

  submitJob(data: Record<string, unknown>): string {
    const queue = data['job_queue'];
    if (typeof queue !== 'string' || !queue) throw new HttpError(422, 'job_queue is required');
    const id = randomUUID();
    this.jobs.set(id, { id, queue, data: { ...data }, submittedAt: Date.now() });
    this.results.set(id, { job_state: 'waiting' });
    this.pending.push(id);
    return id;
  }

  cancelJob(id: string): void {
    const result = this.results.get(id);
    if (!result) throw new HttpError(404, 'job not found');
    if (['complete', 'completed', 'cancelled'].includes(String(result['job_state']))) throw new HttpError(400, `job is already ${String(result['job_state'])}`);
    result['job_state'] = 'cancelled';
    const i = this.pending.indexOf(id);
    if (i >= 0) this.pending.splice(i, 1);
  }

  setAgentState(agent: string, state: string, comment = ''): void {
    this.agents.set(agent, { ...this.agents.get(agent), name: agent, state, comment, updated_at: new Date().toISOString() });
  }

  /** `GET /v1/result/<id>` as users read it: status maps and fragments folded per phase. */
  resultView(id: string): Record<string, unknown> | undefined {
    const result = this.results.get(id);
    if (!result) return undefined;
    const view: Record<string, unknown> = { ...result };
    delete view['status'];
    const status = (result['status'] ?? {}) as Record<string, number>;
    for (const [phase, code] of Object.entries(status)) view[`${phase}_status`] = code;
    const logs = this.logs.get(id);
    for (const phase of PHASES) {
      for (const kind of ['output', 'serial'] as const) {
        const text = [...(logs?.[kind].values() ?? [])]
          .filter((f) => f.phase === phase)
          .sort((a, b) => a.fragment_number - b.fragment_number)
          .map((f) => f.log_data)
          .join('');
        if (text) view[`${phase}_${kind}`] = text;
      }
    }
    return view;
  }

  fragments(id: string, kind: 'output' | 'serial' = 'output'): Fragment[] {
    return [...(this.logs.get(id)?.[kind].values() ?? [])].sort((a, b) => a.fragment_number - b.fragment_number);
  }

  // ---- HTTP ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const body = await readBody(req);
    const agent = cookie(req, 'agent_name');
    let status = 500;
    const polled = req.method === 'GET' ? /^\/v1\/agents\/data\/([^/]+)$/.exec(url.pathname)?.[1] : undefined;
    if (polled) this.pollCounts.set(decodeURIComponent(polled), this.polls(decodeURIComponent(polled)) + 1);
    const override = this.takeOverride(req.method ?? 'GET', url.pathname);
    if (override) {
      this.requests.push({ method: req.method ?? 'GET', path: url.pathname, status: 0, agent, at: Date.now() });
      override(req, res, body);
      return;
    }
    try {
      const fault = this.failWith ?? this.takeFault(req.method ?? 'GET', url.pathname, body);
      if (fault) throw new HttpError(fault, 'failing on purpose');
      this.checkAuth(req, url.pathname, body);
      const answer = this.route(req.method ?? 'GET', url, body, req, agent);
      status = answer.status ?? 200;
      const headers: Record<string, string | string[]> = { ...answer.headers };
      if (answer.json !== undefined) {
        headers['content-type'] = 'application/json';
        res.writeHead(status, headers).end(JSON.stringify(answer.json));
      } else if (answer.bytes) {
        headers['content-type'] = 'application/gzip';
        res.writeHead(status, headers).end(answer.bytes);
      } else {
        res.writeHead(status, headers).end(answer.text ?? '');
      }
    } catch (error) {
      status = error instanceof HttpError ? error.status : 500;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: (error as Error).message }));
    } finally {
      this.requests.push({ method: req.method ?? 'GET', path: url.pathname, status, agent, at: Date.now() });
    }
  }

  private checkAuth(req: http.IncomingMessage, pathname: string, body: Buffer): void {
    if (!this.options.auth || pathname === '/v1' || pathname.startsWith('/v1/oauth2/')) return;
    const restricted = this.options.auth.restrictedQueues;
    if (restricted && !restricted.includes(this.queueActedOn(req.method ?? 'GET', pathname, body) ?? '')) return;
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const expires = token ? this.accessTokens.get(token) : undefined;
    if (!expires || expires < Date.now()) throw new HttpError(401, 'valid Bearer token required');
  }

  /** The queue a job submission or a job action is about; undefined for any other call. */
  private queueActedOn(method: string, pathname: string, body: Buffer): string | undefined {
    const p = pathname.replace(/\/+$/, '');
    if (method === 'POST' && p === '/v1/job') {
      const queue = parseJson(body)['job_queue'];
      return typeof queue === 'string' ? queue : undefined;
    }
    const action = method === 'POST' ? /^\/v1\/job\/([^/]+)\/action$/.exec(p) : null;
    return action ? this.jobs.get(action[1] as string)?.queue : undefined;
  }

  private route(
    method: string,
    url: URL,
    body: Buffer,
    req: http.IncomingMessage,
    agent: string | undefined,
  ): { status?: number; json?: unknown; text?: string; bytes?: Buffer; headers?: Record<string, string | string[]> } {
    const p = url.pathname.replace(/\/+$/, '');
    const json = () => parseJson(body);
    let m: RegExpExecArray | null;
    if (method === 'GET' && p === '/v1') return { text: 'Testflinger Server vdevel' };
    if (method === 'POST' && p === '/v1/oauth2/token') return { json: this.issueRefreshToken(req) };
    if (method === 'POST' && p === '/v1/oauth2/refresh') return { json: this.issueAccessToken(json()) };
    if (method === 'POST' && p === '/v1/job') return { json: { job_id: this.submitJob(json()) } };
    if (method === 'GET' && p === '/v1/job') return this.nextJob(url.searchParams.getAll('queue'), agent);
    if ((m = /^\/v1\/job\/([^/]+)$/.exec(p)) && method === 'GET') {
      const job = this.jobs.get(m[1] as string);
      if (!job) throw new HttpError(404, 'job not found');
      return { json: { ...job.data, job_id: job.id } };
    }
    if ((m = /^\/v1\/job\/([^/]+)\/action$/.exec(p)) && method === 'POST') {
      if (json()['action'] !== 'cancel') throw new HttpError(400, 'unknown action');
      this.cancelJob(m[1] as string);
      return { text: 'OK' };
    }
    if ((m = /^\/v1\/job\/([^/]+)\/attachments$/.exec(p))) {
      const id = m[1] as string;
      if (method === 'POST') {
        const file = multipartFile(body, req.headers['content-type'] ?? '') ?? body;
        this.attachments.set(id, file);
        const job = this.jobs.get(id);
        if (job) job.data['attachments_status'] = 'complete';
        return { text: 'OK' };
      }
      const data = this.attachments.get(id);
      if (!data) throw new HttpError(404, 'no attachments');
      return { bytes: data };
    }
    if ((m = /^\/v1\/job\/([^/]+)\/events$/.exec(p)) && method === 'POST') {
      this.jobEvents.set(m[1] as string, (json()['events'] as unknown[]) ?? []);
      return { text: 'OK' };
    }
    if ((m = /^\/v1\/result\/([^/]+)$/.exec(p))) return this.result(method, m[1] as string, json);
    if ((m = /^\/v1\/result\/([^/]+)\/log\/(output|serial)$/.exec(p))) {
      const id = m[1] as string;
      const kind = m[2] as 'output' | 'serial';
      if (method === 'POST') {
        const f = json() as unknown as Fragment;
        if (typeof f.fragment_number !== 'number' || typeof f.log_data !== 'string') throw new HttpError(422, 'fragment_number and log_data required');
        const logs = this.logs.get(id) ?? { output: new Map(), serial: new Map() };
        logs[kind].set(f.fragment_number, { ...f, receivedAt: Date.now() });
        this.logs.set(id, logs);
        return { text: 'OK' };
      }
      return { json: { [kind]: Object.fromEntries(PHASES.map((ph) => [ph, this.fragments(id, kind).filter((f) => f.phase === ph).map((f) => f.log_data).join('')])) } };
    }
    if ((m = /^\/v1\/result\/([^/]+)\/artifact$/.exec(p))) {
      const id = m[1] as string;
      if (method === 'POST') {
        const file = multipartFile(body, req.headers['content-type'] ?? '');
        if (!file) throw new HttpError(400, 'multipart field "file" required');
        this.artifacts.set(id, file);
        return { text: 'OK' };
      }
      const data = this.artifacts.get(id);
      if (!data) throw new HttpError(204, 'no artifact');
      return { bytes: data };
    }
    if (method === 'GET' && p === '/v1/agents/data') return { json: [...this.agents.values()] };
    if ((m = /^\/v1\/agents\/data\/([^/]+)$/.exec(p))) {
      const name = m[1] as string;
      if (method === 'GET') {
        const data = this.agents.get(name);
        if (!data) throw new HttpError(404, 'agent not found');
        return { json: data };
      }
      this.agents.set(name, { ...this.agents.get(name), ...json(), name, updated_at: new Date().toISOString() });
      return { json: { status: 'OK' }, headers: { 'set-cookie': `agent_name=${name}; Path=/` } };
    }
    if (method === 'POST' && p === '/v1/agents/queues') {
      Object.assign(this.advertisedQueues, json());
      return { text: 'OK' };
    }
    if (method === 'POST' && p === '/v1/agents/images') {
      Object.assign(this.advertisedImages, json());
      return { text: 'OK' };
    }
    if ((m = /^\/v1\/agents\/provision_logs\/([^/]+)$/.exec(p)) && method === 'POST') {
      const name = m[1] as string;
      this.provisionLogs.set(name, [...(this.provisionLogs.get(name) ?? []), json()]);
      return { text: 'OK' };
    }
    throw new HttpError(404, `no route for ${method} ${p}`);
  }

  private nextJob(queues: string[], agent: string | undefined) {
    if (!agent) throw new HttpError(401, 'agent_name cookie required');
    const index = this.pending.findIndex((id) => {
      const job = this.jobs.get(id);
      const excluded = (job?.data['exclude_agents'] as string[] | undefined) ?? [];
      return job !== undefined && queues.includes(job.queue) && !excluded.includes(agent);
    });
    if (index < 0) return { status: 204 };
    const [id] = this.pending.splice(index, 1) as [string];
    const job = this.jobs.get(id) as StoredJob;
    job.agent = agent;
    const result = this.results.get(id) ?? {};
    this.results.set(id, { ...result, job_state: 'running' });
    return { json: { ...job.data, job_id: id, started_at: new Date().toISOString() } };
  }

  private result(method: string, id: string, json: () => Record<string, unknown>) {
    if (method === 'GET') {
      const view = this.resultView(id);
      if (!view) throw new HttpError(404, 'job not found');
      return { json: view };
    }
    const current = this.results.get(id);
    if (!current) throw new HttpError(404, 'job not found');
    const update = json();
    // A cancelled job stays cancelled, whatever state the agent posts afterwards.
    if (current['job_state'] === 'cancelled' && update['job_state'] !== undefined) delete update['job_state'];
    const status = { ...((current['status'] ?? {}) as object), ...((update['status'] ?? {}) as object) };
    this.results.set(id, { ...current, ...update, status });
    return { text: 'OK' };
  }

  private issueRefreshToken(req: http.IncomingMessage) {
    const auth = this.options.auth;
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const [id, secret] = basic ? Buffer.from(basic, 'base64').toString('utf8').split(':') : [];
    if (!auth || id !== auth.clientId || secret !== auth.secret) throw new HttpError(401, 'invalid client credentials');
    const refresh = randomUUID();
    this.refreshTokens.add(refresh);
    return { ...this.issueAccessToken({ refresh_token: refresh }), refresh_token: refresh };
  }

  private issueAccessToken(body: Record<string, unknown>) {
    const refresh = String(body['refresh_token'] ?? '');
    if (!this.refreshTokens.has(refresh)) throw new HttpError(400, 'invalid refresh token');
    const access = randomUUID();
    const ttl = this.options.auth?.accessTtlS ?? 600;
    this.accessTokens.set(access, Date.now() + ttl * 1000);
    return { access_token: access, expires_in: ttl, token_type: 'Bearer' };
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(body: Buffer): Record<string, unknown> {
  if (body.length === 0) return {};
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new HttpError(400, `invalid JSON body: ${(error as Error).message}`);
  }
}

function cookie(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}
