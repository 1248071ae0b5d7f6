/**
 * The Testflinger server, as multi's child jobs need it (upstream's TFClient): submit a job, read
 * a job's result, cancel a job. Each call may take 15 s, as upstream's.
 */
import { z } from 'zod';
import { ConnectorError } from '../../errors';
import { quoted } from '../../../common/text';
import type { AgentToken } from './credentials';

const CALL_TIMEOUT_MS = 15_000;
/** Job ids go into URL paths: the server's UUIDs, nothing that needs escaping. */
export const jobIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/, 'a job id (letters, digits, "-")');

const createdSchema = z.object({ job_id: jobIdSchema }).passthrough();
const resultSchema = z.object({ job_state: z.string().optional(), device_info: z.unknown().optional() }).passthrough();

export class TestflingerServer {
  /** `token`: the agent's access token, sent as a Bearer token with every call (upstream's multi sends none). */
  constructor(
    readonly url: string,
    private readonly token?: AgentToken,
  ) {}

  private async call(method: 'GET' | 'POST', endpoint: string, body?: unknown): Promise<{ status: number; text: string }> {
    const url = new URL(endpoint, this.url).toString();
    const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
    const bearer = await this.token?.current();
    if (bearer !== undefined) headers['authorization'] = `Bearer ${bearer}`;
    try {
      const res = await fetch(url, { method, signal: AbortSignal.timeout(CALL_TIMEOUT_MS), headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      return { status: res.status, text: await res.text() };
    } catch (error) {
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      throw new ConnectorError(`${method} ${url} failed: ${(error as Error).message}${cause ? `: ${cause}` : ''}`);
    }
  }

  private async ok(method: 'GET' | 'POST', endpoint: string, body?: unknown): Promise<unknown> {
    const { status, text } = await this.call(method, endpoint, body);
    if (status < 200 || status > 299) throw new ConnectorError(`${method} ${endpoint} answered HTTP ${status}: ${quoted(text)}${this.unauthorisedNote(status)}`);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }

  /** A 401/403 says whether the agent's credentials were sent. */
  private unauthorisedNote(status: number): string {
    if (status !== 401 && status !== 403) return '';
    return this.token ? " (sent with the agent's access token)" : ' (sent without credentials: the agent gives its token only to the provision and cleanup phases of a multi agent with a token file)';
  }

  async submitJob(job: Record<string, unknown>): Promise<string> {
    const parsed = createdSchema.safeParse(await this.ok('POST', '/v1/job', job));
    if (!parsed.success) throw new ConnectorError('the server did not answer the job submission with a job id');
    return parsed.data.job_id;
  }

  /** A job's result; unknown when the server cannot say (as upstream, that is not fatal). */
  async result(jobId: string): Promise<z.output<typeof resultSchema> | undefined> {
    try {
      const parsed = resultSchema.safeParse(await this.ok('GET', `/v1/result/${jobId}`));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Cancels a job; one already over (400) is fine, as upstream. */
  async cancel(jobId: string): Promise<void> {
    const { status, text } = await this.call('POST', `/v1/job/${jobId}/action`, { action: 'cancel' });
    if ((status < 200 || status > 299) && status !== 400) throw new ConnectorError(`cancelling job ${jobId} answered HTTP ${status}: ${quoted(text)}${this.unauthorisedNote(status)}`);
  }
}
