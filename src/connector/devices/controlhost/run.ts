/**
 * Provisioning on a control host, as upstream's control-host connectors do it: the connector only
 * checks the job and builds the request; the control host runs the provisioning and streams its
 * log, and its final status decides the phase's exit code.
 *
 *   POST /api/v1/provision            {"method", "args", "kwargs"}  -> {"job_id"}
 *   POST /api/v1/provision/multipart  request=<that JSON>, boot_binary=<the provision attachment>
 *   GET  /api/v1/provision/<id>/logs  server-sent events, one JSON log entry each
 *   GET  /api/v1/provision/<id>       {"status": "running" | "completed" | ..., "error"}
 */
import { z } from 'zod';
import { ConnectorError } from '../../errors';
import type { JobFile } from '../../config';
import type { PhaseContext } from '../../phases';
import { quoted } from '../../../common/text';
import { openProvisionAttachment, multipartBody } from './attachment';
import { controlHostApi } from '../../controlhost-hooks';
import { CONNECTION_TIMEOUT_SECONDS, SilenceError, type ControlHostApi } from './client';
import type { ControlHostConfig } from './config';
import { emptyResult, readEvents, type StreamResult } from './sse';

const PROVISION = '/api/v1/provision';

/** Job ids go into URL paths: only what needs no escaping. */
const createdSchema = z.object({ job_id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, 'a job id (letters, digits, ".", "_", ":", "-")') }).passthrough();
const statusSchema = z.object({ status: z.string(), error: z.unknown().optional() }).passthrough();

const LOG_LEVELS = new Set(['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL']);

export interface ControlHostRun {
  ctx: PhaseContext;
  config: ControlHostConfig;
  /** The read timeout: provision_data.provisioning_timeout, else upstream's 90 minutes. */
  readTimeoutSeconds: number;
  /** The job's own passwords: masked wherever the control host's answer quotes them back. */
  secrets: readonly string[];
}

/** The passwords a job gave (test_data.test_password, a provision plan's); upstream's defaults are no secrets. */
export function jobSecrets(job: JobFile): string[] {
  const testPassword = (job.test_data as Record<string, unknown> | null | undefined)?.['test_password'];
  const plan = job.provision_data?.['provision_plan'] as { config?: { password?: unknown } } | undefined;
  return [testPassword, plan?.config?.password].filter((p): p is string => typeof p === 'string' && p !== '');
}

/** The fields upstream always sets from the device config, and the scripts a job may override. */
function requestKwargs(config: ControlHostConfig, kwargs: Record<string, unknown>): Record<string, unknown> {
  return {
    reboot_script: config.reboot_script,
    poweron_script: config.poweron_script ?? null,
    poweroff_script: config.poweroff_script ?? null,
    ...kwargs,
    agent_name: config.agent_name,
    cid: config.env['CID'] ?? null,
    device_ip: config.device_ip,
  };
}

/** A control host's log entry as a phase output line; its text may not start lines of its own. */
function logLine(level: string, message: string): string[] {
  const prefix = level === 'INFO' || level === 'DEBUG' ? '[control-host]' : `[control-host] ${level}:`;
  // eslint-disable-next-line no-control-regex
  return message.split(/\r\n|\r|\n/).map((text) => `${prefix} ${text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?')}`);
}

function printEntry(ctx: PhaseContext, payload: string): boolean {
  let entry: unknown;
  try {
    entry = JSON.parse(payload);
  } catch {
    entry = undefined;
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    ctx.print(`Malformed SSE data: ${quoted(payload)}`);
    return false;
  }
  const { level, message } = entry as { level?: unknown; message?: unknown };
  let name = typeof level === 'string' ? level.toUpperCase() : '';
  if (!LOG_LEVELS.has(name)) {
    ctx.print(`Unknown log level ${quoted(level ?? '')}, defaulting to INFO`);
    name = 'INFO';
  }
  for (const line of logLine(name, typeof message === 'string' ? message : payload)) ctx.print(line);
  return true;
}

/** Starts the provisioning: with the provision attachment as a multipart upload, else as JSON. */
async function submit(run: ControlHostRun, api: ControlHostApi, request: string): Promise<string> {
  const attachment = openProvisionAttachment(run.ctx.runDir);
  let answer: string;
  if (attachment) {
    run.ctx.print(`Uploading boot binary ${quoted(attachment.name)} (${attachment.size} bytes) as multipart attachment`);
    const { body, contentType } = multipartBody(request, attachment);
    const limits = { headersSeconds: run.readTimeoutSeconds, readSeconds: run.readTimeoutSeconds };
    answer = await (await api.request('POST', `${PROVISION}/multipart`, { body, headers: { 'content-type': contentType }, limits })).text();
  } else {
    answer = await (await api.request('POST', PROVISION, { body: request, headers: { 'content-type': 'application/json' } })).text();
  }
  let created: unknown;
  try {
    created = JSON.parse(answer);
  } catch {
    created = undefined;
  }
  const parsed = createdSchema.safeParse(created);
  if (!parsed.success) throw new ConnectorError(`the control host did not answer the provisioning request with a job id: ${quoted(answer)}`);
  return parsed.data.job_id;
}

async function jobStatus(api: ControlHostApi, jobId: string): Promise<z.output<typeof statusSchema>> {
  const parsed = statusSchema.safeParse(await api.json('GET', `${PROVISION}/${jobId}`));
  if (!parsed.success) throw new ConnectorError(`the control host's status of job ${jobId} has no "status"`);
  return parsed.data;
}

/**
 * Reads one connection of the log stream; a connection that drops is not a failure (the job's
 * status says what happened), but one silent for the read timeout is.
 */
async function streamOnce(run: ControlHostRun, api: ControlHostApi, jobId: string, lastId: string | null): Promise<StreamResult & { broke: boolean }> {
  const limits = { headersSeconds: CONNECTION_TIMEOUT_SECONDS, readSeconds: run.readTimeoutSeconds };
  const headers = lastId === null ? undefined : { 'last-event-id': lastId };
  const response = await api.request('GET', `${PROVISION}/${jobId}/logs`, { headers, limits });
  const result = { ...emptyResult(), broke: false };
  try {
    await readEvents(response.chunks(), (payload) => printEntry(run.ctx, payload), result);
    return result;
  } catch (error) {
    if (error instanceof SilenceError) throw error;
    // Upstream's connector fails here; a broken stream is treated as a dropped one instead.
    run.ctx.print(`the log stream of job ${jobId} broke: ${(error as Error).message}`);
    return { ...result, broke: true };
  } finally {
    response.close();
  }
}

/**
 * Submits the provisioning request and follows the job to its end. While the job runs, a dropped
 * stream is reopened (resuming after the last entry shown) after a pause that starts at the
 * base delay and doubles, up to the cap, while reconnects bring nothing new, as upstream's.
 * Bounded: the control host may stay silent, across reconnects, for at most the read timeout.
 */
export async function provisionOnControlHost(run: ControlHostRun, method: string, kwargs: Record<string, unknown>): Promise<void> {
  const { ctx, config } = run;
  const api = controlHostApi(config, run.secrets);
  const request = JSON.stringify({ method, args: [], kwargs: requestKwargs(config, kwargs) });
  const jobId = await submit(run, api, request);
  ctx.print(`the control host runs ${method} as job ${jobId}`);
  const baseDelay = config.control_host_reconnect_seconds;
  let delay = baseDelay;
  let lastId: string | null = null;
  let heardAt = Date.now();
  for (;;) {
    const stream = await streamOnce(run, api, jobId, lastId);
    if (stream.cursorUpdated) lastId = stream.lastId;
    if (stream.emitted > 0) heardAt = Date.now();
    const status = await jobStatus(api, jobId);
    // A stream that broke may have missed the job's last entries: they are read once more.
    if (status.status !== 'running' && stream.broke) await streamOnce(run, api, jobId, lastId);
    if (status.status === 'completed') return;
    if (status.status !== 'running') throw new ConnectorError(typeof status.error === 'string' && status.error ? status.error : 'Provisioning failed for unknown reason.');
    if (Date.now() - heardAt > run.readTimeoutSeconds * 1000) throw new SilenceError(`the control host sent no log entry of job ${jobId} for ${run.readTimeoutSeconds}s`);
    ctx.print(`SSE stream disconnected but job ${jobId} is still running, reconnecting in ${delay}s...`);
    await ctx.sleep(delay * 1000);
    delay = stream.emitted > 0 ? baseDelay : Math.min(delay * 2, config.control_host_reconnect_max_seconds);
  }
}
