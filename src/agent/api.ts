/**
 * The calls the agent makes, typed. The server is not trusted: the job JSON is validated at
 * this boundary, and every value put into a URL path is one encoded segment.
 */
import { z } from 'zod';
import { NO_RETRY, type RetryPolicy, type TestflingerClient } from './client';
import { multipartBody } from './http';

const phaseData = z.record(z.string(), z.unknown()).nullish();

/**
 * Job ids are UUIDs on the Testflinger server (it makes them with uuid4 and refuses any other
 * id a client submits), and the agent uses them as folder names and URL segments: anything
 * else is refused, not escaped.
 */
export const JOB_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const jobId = z.string().regex(JOB_ID_PATTERN, 'not a UUID');

export const jobSchema = z
  .object({
    job_id: jobId,
    job_queue: z.string().optional(),
    parent_job_id: jobId.nullish(),
    global_timeout: z.number().positive().nullish(),
    output_timeout: z.number().positive().nullish(),
    job_status_webhook: z.string().nullish(),
    attachments_status: z.string().nullish(),
    setup_data: phaseData,
    provision_data: phaseData,
    firmware_update_data: phaseData,
    test_data: phaseData,
    allocate_data: phaseData,
    reserve_data: phaseData,
  })
  .passthrough();
export type Job = z.output<typeof jobSchema>;

export const agentDataSchema = z
  .object({
    state: z.string().optional(),
    comment: z.string().optional(),
    restricted_to: z.record(z.string(), z.array(z.string())).nullish(),
  })
  .passthrough();
export type AgentData = z.output<typeof agentDataSchema>;

export interface LogFragment {
  fragment_number: number;
  timestamp: string;
  phase: string;
  log_data: string;
}

export type LogKind = 'output' | 'serial';

/** What `GET /v1/job` offered: nothing, a job, or a job refused at the boundary (with why). */
export type JobOffer = undefined | { job: Job } | { refused: string };

/** One URL path segment: `/`, `..` and the rest cannot change the path's shape. */
const seg = (value: string) => encodeURIComponent(value);

/** `job_id "../x": not a UUID` from the first issue; the server's value is quoted and cut short. */
function refusalReason(raw: unknown, error: z.ZodError): string {
  const issue = error.issues[0];
  const id = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['job_id'] : undefined;
  const where = issue?.path.join('.') || 'job';
  const value = typeof id === 'string' ? ` (job_id ${JSON.stringify(id.slice(0, 100))})` : '';
  return `${where}: ${issue?.message ?? 'invalid'}${value}`;
}

export class ServerApi {
  constructor(readonly client: TestflingerClient) {}

  /** `GET /v1`: true when the server answers. */
  /** Why the server is not answering `GET /v1` (a refused certificate, a refused connection...); undefined when it answers. */
  async whyDown(signal?: AbortSignal): Promise<string | undefined> {
    try {
      await this.client.request('GET', '/v1', { retry: NO_RETRY, ...(signal ? { signal } : {}) });
      return undefined;
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  }

  async nextJob(queues: readonly string[], signal?: AbortSignal): Promise<JobOffer> {
    const res = await this.client.request('GET', '/v1/job', { query: { queue: [...queues] }, retry: NO_RETRY, ...(signal ? { signal } : {}) });
    if (res.status === 204 || res.text.trim() === '' || res.text.trim() === '{}') return undefined;
    let raw: unknown;
    try {
      raw = res.json();
    } catch {
      return { refused: 'the reply is not JSON' };
    }
    const parsed = jobSchema.safeParse(raw);
    return parsed.success ? { job: parsed.data } : { refused: refusalReason(raw, parsed.error) };
  }

  async jobState(jobId: string): Promise<string | undefined> {
    const res = await this.client.request('GET', `/v1/result/${seg(jobId)}`, { accept: [404] });
    if (res.status === 404) return undefined;
    const state = res.json<{ job_state?: unknown } | null>()?.job_state;
    return typeof state === 'string' ? state : undefined;
  }

  async postResult(jobId: string, data: Record<string, unknown>, retry?: RetryPolicy): Promise<void> {
    await this.client.request('POST', `/v1/result/${seg(jobId)}`, { json: data, ...(retry ? { retry } : {}) });
  }

  async postLog(jobId: string, kind: LogKind, fragment: LogFragment): Promise<void> {
    await this.client.request('POST', `/v1/result/${seg(jobId)}/log/${seg(kind)}`, { json: fragment, retry: NO_RETRY });
  }

  async uploadArtifact(jobId: string, tarball: Buffer): Promise<void> {
    const { body, contentType } = multipartBody('file', 'artifacts.tar.gz', 'application/gzip', tarball);
    await this.client.request('POST', `/v1/result/${seg(jobId)}/artifact`, { body: { data: body, contentType } });
  }

  /** Streams the job's attachments archive into `file`; refuses (and removes it) past maxBytes. */
  async downloadAttachments(jobId: string, file: string, maxBytes: number): Promise<void> {
    await this.client.request('GET', `/v1/job/${seg(jobId)}/attachments`, { download: { file, maxBytes } });
  }

  async agentData(agent: string): Promise<AgentData | undefined> {
    const res = await this.client.request('GET', `/v1/agents/data/${seg(agent)}`, { accept: [404], retry: NO_RETRY });
    if (res.status === 404 || !res.text.trim()) return undefined;
    return agentDataSchema.parse(res.json());
  }

  async postAgentData(agent: string, data: Record<string, unknown>, retry?: RetryPolicy): Promise<void> {
    await this.client.request('POST', `/v1/agents/data/${seg(agent)}`, { json: data, ...(retry ? { retry } : {}) });
  }

  async postQueues(queues: Record<string, string>): Promise<void> {
    await this.client.request('POST', '/v1/agents/queues', { json: queues });
  }

  async postImages(images: Record<string, Record<string, string>>): Promise<void> {
    await this.client.request('POST', '/v1/agents/images', { json: images });
  }

  async postProvisionLog(agent: string, entry: { job_id: string; exit_code: number; detail: string }): Promise<void> {
    await this.client.request('POST', `/v1/agents/provision_logs/${seg(agent)}`, { json: entry, retry: NO_RETRY });
  }

  /** `POST /v1/job`: submits a job (MQTT's submit topic); returns the id the server gave it. */
  async submitJob(job: Record<string, unknown>): Promise<string> {
    const res = await this.client.request('POST', '/v1/job', { json: job, retry: NO_RETRY });
    return jobId.parse(res.json<{ job_id?: unknown } | null>()?.job_id);
  }

  async postJobEvents(jobId: string, payload: Record<string, unknown>): Promise<void> {
    await this.client.request('POST', `/v1/job/${seg(jobId)}/events`, { json: payload });
  }
}
