/**
 * An emulated control host: the REST API upstream's control-host connectors talk to, on
 * 127.0.0.1 (a port of its own). A provisioning request starts a job that emits its log entries
 * over time and ends as the behaviour says; the log stream is server-sent events with ids, resumed
 * after Last-Event-ID. Failure modes: a failing provisioning, a stream dropped mid-way (or
 * several that bring nothing), a stream cut off (its socket destroyed), a request body refused with 422 (a missing field, an unknown
 * preset), a slow job.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LogEntry {
  level: string;
  message: string;
}

export interface ControlHostBehaviour {
  /** The entries the provisioning logs, in order. */
  logs: LogEntry[];
  /** The pause before each entry. */
  entryMs: number;
  /** How the job ends, after its last entry. */
  outcome: 'completed' | 'failed';
  /** The job's error when it fails; none: the status carries no error. */
  error?: string;
  /**
   * What the log connections do, one by one: a number ends the stream while the job runs, after
   * that many entries (as a proxy's timeout would); 0 ends it at once. Connections past the list
   * stay up until the job ends.
   */
  drops: number[];
  /** The first log connection is cut (its socket destroyed, mid-response) shortly after this many entries. */
  cutAfter?: number;
  /** Raw text the stream sends first on each connection (a malformed entry, say). */
  preamble?: string;
  /**
   * After POST /api/v1/system/poweroff the host is down (it resets every connection) until this
   * file exists: the test's control_host_reboot_script creates it, as a PDU would power it on.
   */
  powerOnFlag?: string;
  /** The answer to POST /api/v1/system/poweroff (a control host without that endpoint: 404). */
  poweroffStatus: number;
  /** The presets this control host knows; a request naming another is refused (422). */
  presets: string[];
}

export interface ProvisionRequest {
  method: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  /** The boot_binary part of a multipart request. */
  attachment?: { name: string; content: string };
}

interface Job {
  id: string;
  status: 'running' | 'completed' | 'failed';
  entries: LogEntry[];
  /** Log connections waiting for the next entry or the end. */
  listeners: Set<() => void>;
}

/** The kwargs each provisioning method needs, as the control host's API models them. */
const REQUIRED_KWARGS: Record<string, string[]> = {
  ProvisioningKVM: ['username', 'password', 'agent_name', 'device_ip'],
  ProvisioningIoT: ['username', 'password', 'urls', 'agent_name', 'device_ip'],
  ProvisioningOEM: ['control_host_iso_url', 'control_host_iso_type', 'username', 'password', 'agent_name', 'device_ip'],
};

export class EmulatedControlHost {
  readonly behaviour: ControlHostBehaviour;
  /** Every request, in order: "<METHOD> <path>". */
  readonly calls: string[] = [];
  readonly provisions: ProvisionRequest[] = [];
  /** The Last-Event-ID each log connection came with (null: none). */
  readonly logConnections: (string | null)[] = [];
  private readonly jobs = new Map<string, Job>();
  private down = false;
  /** How many times it was powered back on. */
  boots = 0;
  private readonly server = http.createServer((req, res) => void this.handle(req, res));

  constructor(behaviour: Partial<ControlHostBehaviour> = {}) {
    this.behaviour = { logs: [{ level: 'INFO', message: 'provisioning started' }, { level: 'INFO', message: 'provisioning done' }], entryMs: 20, outcome: 'completed', presets: ['desktop-noble', 'core24'], drops: [], poweroffStatus: 200, ...behaviour };
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  jobStatus(id: string): string | undefined {
    return this.jobs.get(id)?.status;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://control-host');
    this.calls.push(`${req.method} ${url.pathname}`);
    if (this.down && !this.poweredOn()) {
      req.socket.destroy();
      return;
    }
    const body = await readBody(req);
    const route = `${req.method} ${url.pathname}`;
    let match: RegExpExecArray | null;
    if (route === 'GET /health') return send(res, 200, { status: 'ok' });
    if ((match = /^POST \/api\/v1\/system\/setup\/(provisioning|test)$/.exec(route))) return send(res, 200, { phase: match[1] });
    if (route === 'POST /api/v1/system/poweroff') {
      this.down = this.behaviour.poweroffStatus === 200;
      return send(res, this.behaviour.poweroffStatus, {});
    }
    if (route === 'POST /api/v1/provision') return this.provision(res, parseJson(body.toString('utf8')));
    if (route === 'POST /api/v1/provision/multipart') return this.provisionMultipart(req, res, body);
    if ((match = /^GET \/api\/v1\/provision\/([^/]+)\/logs$/.exec(route))) return this.streamLogs(req, res, match[1] ?? '');
    if ((match = /^GET \/api\/v1\/provision\/([^/]+)$/.exec(route))) {
      const job = this.jobs.get(match[1] ?? '');
      if (!job) return send(res, 404, { detail: 'job not found' });
      const failed = job.status === 'failed' && this.behaviour.error !== undefined;
      return send(res, 200, { job_id: job.id, status: job.status, ...(failed ? { error: this.behaviour.error } : {}) });
    }
    send(res, 404, { detail: 'Not Found' });
  }

  private poweredOn(): boolean {
    const flag = this.behaviour.powerOnFlag;
    if (!flag || !fs.existsSync(flag)) return false;
    fs.rmSync(flag);
    this.down = false;
    this.boots++;
    return true;
  }

  private async provisionMultipart(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> {
    const form = await new Request('http://control-host/', { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body }).formData();
    const file = form.get('boot_binary');
    if (!(file instanceof Blob)) return send(res, 422, { detail: 'boot_binary: field required' });
    const attachment = { name: (file as File).name, content: await file.text() };
    return this.provision(res, parseJson(String(form.get('request') ?? '')), attachment);
  }

  private provision(res: http.ServerResponse, request: unknown, attachment?: ProvisionRequest['attachment']): void {
    const problem = badRequest(request) ?? this.unknownPreset(request as ProvisionRequest);
    if (problem) return send(res, 422, { detail: problem });
    const job: Job = { id: `job-${this.jobs.size + 1}`, status: 'running', entries: [], listeners: new Set() };
    this.jobs.set(job.id, job);
    this.provisions.push({ ...(request as ProvisionRequest), ...(attachment ? { attachment } : {}) });
    this.runJob(job);
    send(res, 200, { job_id: job.id });
  }

  private unknownPreset(request: ProvisionRequest): string | undefined {
    const preset = request.kwargs['preset'];
    return typeof preset === 'string' && !this.behaviour.presets.includes(preset) ? `kwargs.preset: unknown preset ${JSON.stringify(preset)}` : undefined;
  }

  /** Emits the entries one by one, then ends the job. */
  private runJob(job: Job, index = 0): void {
    setTimeout(() => {
      const entry = this.behaviour.logs[index];
      if (entry) job.entries.push(entry);
      else job.status = this.behaviour.outcome;
      for (const wake of [...job.listeners]) wake();
      if (entry) this.runJob(job, index + 1);
    }, this.behaviour.entryMs).unref();
  }

  private streamLogs(req: http.IncomingMessage, res: http.ServerResponse, id: string): void {
    const job = this.jobs.get(id);
    if (!job) return send(res, 404, { detail: 'job not found' });
    const lastId = typeof req.headers['last-event-id'] === 'string' ? req.headers['last-event-id'] : null;
    this.logConnections.push(lastId);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    const dropAfter = this.behaviour.drops[this.logConnections.length - 1];
    if (this.behaviour.preamble) res.write(this.behaviour.preamble);
    // Ids are 1-based entry numbers: resume after the one the client last handled.
    let next = lastId === null ? 0 : Number(lastId);
    let sentHere = 0;
    const pump = (): void => {
      for (;;) {
        if (sentHere === this.behaviour.cutAfter && this.logConnections.length === 1) {
          job.listeners.delete(pump);
          // Let the entries reach the client first: the cut is the point, not lost writes.
          setTimeout(() => res.destroy(), 100);
          return;
        }
        if (sentHere === dropAfter) {
          job.listeners.delete(pump);
          res.end();
          return;
        }
        if (next >= job.entries.length) break;
        res.write(`id: ${next + 1}\ndata: ${JSON.stringify(job.entries[next])}\n\n`);
        next++;
        sentHere++;
      }
      if (job.status !== 'running') {
        job.listeners.delete(pump);
        res.end();
      }
    };
    job.listeners.add(pump);
    res.on('close', () => job.listeners.delete(pump));
    pump();
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** What is wrong with a provisioning request, as a 422's detail; undefined when nothing is. */
function badRequest(request: unknown): string | undefined {
  if (typeof request !== 'object' || request === null) return 'body: a JSON object is required';
  const { method, args, kwargs } = request as Partial<ProvisionRequest>;
  const required = typeof method === 'string' ? REQUIRED_KWARGS[method] : undefined;
  if (!required) return `method: unknown provisioning method ${JSON.stringify(method)}`;
  if (!Array.isArray(args)) return 'args: a list is required';
  if (typeof kwargs !== 'object' || kwargs === null) return 'kwargs: an object is required';
  const missing = required.filter((key) => kwargs[key] === undefined || kwargs[key] === null);
  if (method === 'ProvisioningKVM' && kwargs['url'] === undefined && kwargs['preset'] === undefined) missing.push('url');
  // A stock ISO has no autoinstall files of its own: the request must bring them.
  if (method === 'ProvisioningOEM' && kwargs['control_host_iso_type'] === 'stock') missing.push(...['meta_data_b64', 'user_data_b64', 'grub_cfg_b64'].filter((key) => typeof kwargs[key] !== 'string'));
  return missing.length > 0 ? `kwargs: field required: ${missing.join(', ')}` : undefined;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
