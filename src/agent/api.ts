/** The calls the agent makes, typed; the job JSON is validated at this boundary. */
import { z } from 'zod';
import { NO_RETRY, type RetryPolicy, type TestflingerClient } from './client';
import { multipartBody } from './http';

const phaseData = z.record(z.string(), z.unknown()).nullish();

export const jobSchema = z
  .object({
    job_id: z.string().min(1),
    job_queue: z.string().optional(),
    parent_job_id: z.string().nullish(),
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

export class ServerApi {
  constructor(readonly client: TestflingerClient) {}

  /** `GET /v1`: true when the server answers. */
  async isUp(signal?: AbortSignal): Promise<boolean> {
    try {
      await this.client.request('GET', '/v1', { retry: NO_RETRY, ...(signal ? { signal } : {}) });
      return true;
    } catch {
      return false;
    }
  }

  async nextJob(queues: readonly string[], signal?: AbortSignal): Promise<Job | undefined> {
    const res = await this.client.request('GET', '/v1/job', { query: { queue: [...queues] }, retry: NO_RETRY, ...(signal ? { signal } : {}) });
    if (res.status === 204 || res.text.trim() === '' || res.text.trim() === '{}') return undefined;
    return jobSchema.parse(res.json());
  }

  async jobState(jobId: string): Promise<string | undefined> {
    const res = await this.client.request('GET', `/v1/result/${jobId}`, { accept: [404] });
    if (res.status === 404) return undefined;
    return res.json<{ job_state?: string } | null>()?.job_state;
  }

  async postResult(jobId: string, data: Record<string, unknown>, retry?: RetryPolicy): Promise<void> {
    await this.client.request('POST', `/v1/result/${jobId}`, { json: data, ...(retry ? { retry } : {}) });
  }

  async postLog(jobId: string, kind: LogKind, fragment: LogFragment): Promise<void> {
    await this.client.request('POST', `/v1/result/${jobId}/log/${kind}`, { json: fragment, retry: NO_RETRY });
  }

  async uploadArtifact(jobId: string, tarball: Buffer): Promise<void> {
    const { body, contentType } = multipartBody('file', 'artifacts.tar.gz', 'application/gzip', tarball);
    await this.client.request('POST', `/v1/result/${jobId}/artifact`, { body: { data: body, contentType } });
  }

  async attachments(jobId: string): Promise<Buffer> {
    const res = await this.client.request('GET', `/v1/job/${jobId}/attachments`);
    return res.bytes;
  }

  async agentData(agent: string): Promise<AgentData | undefined> {
    const res = await this.client.request('GET', `/v1/agents/data/${agent}`, { accept: [404], retry: NO_RETRY });
    if (res.status === 404 || !res.text.trim()) return undefined;
    return agentDataSchema.parse(res.json());
  }

  async postAgentData(agent: string, data: Record<string, unknown>, retry?: RetryPolicy): Promise<void> {
    await this.client.request('POST', `/v1/agents/data/${agent}`, { json: data, ...(retry ? { retry } : {}) });
  }

  async postQueues(queues: Record<string, string>): Promise<void> {
    await this.client.request('POST', '/v1/agents/queues', { json: queues });
  }

  async postImages(images: Record<string, Record<string, string>>): Promise<void> {
    await this.client.request('POST', '/v1/agents/images', { json: images });
  }

  async postProvisionLog(agent: string, entry: { job_id: string; exit_code: number; detail: string }): Promise<void> {
    await this.client.request('POST', `/v1/agents/provision_logs/${agent}`, { json: entry, retry: NO_RETRY });
  }

  async postJobEvents(jobId: string, payload: Record<string, unknown>): Promise<void> {
    await this.client.request('POST', `/v1/job/${jobId}/events`, { json: payload });
  }
}
