/**
 * Job submission over MQTT (the charm's mqtt-submit): a JSON job published on
 * `<prefix>/<agent_id>/submit` is checked and posted to the Testflinger server, on one of this
 * agent's queues, with the agent's credentials; the reply (the job id, or why not) goes to
 * `<prefix>/<agent_id>/submit_status`. Anyone who may publish on the broker may then submit jobs
 * to these queues (docs/security.md). One submission at a time; a few more wait, the rest are refused.
 */
import { z } from 'zod';
import type { ServerApi } from '../api';
import type { Logger } from '../logger';
import type { MqttLink } from './link';
import type { AgentTopics } from './topics';
import { QUEUE_NAME_PATTERN, QUEUE_NAME_RULE } from '../names';

/** Larger messages are refused unread: a job is a few KB of YAML turned JSON. */
export const SUBMIT_MAX_BYTES = 256 * 1024;
/** The broker sends the agent nothing larger (MQTT 5's maximum packet size): twice the above, so a job a little too large still gets its refusal. */
export const SUBMIT_MAX_PACKET_BYTES = 2 * SUBMIT_MAX_BYTES;
const SUBMIT_WAITING_MAX = 5;

const phaseData = z.record(z.string(), z.unknown());

/** The keys of upstream's job schema that a submitter sets; anything else is refused. */
export const submittedJobSchema = z
  .object({
    job_queue: z.string().regex(QUEUE_NAME_PATTERN, QUEUE_NAME_RULE).optional(),
    name: z.string().max(200).optional(),
    tags: z.array(z.string().max(200)).max(50).optional(),
    global_timeout: z.number().int().positive().optional(),
    output_timeout: z.number().int().positive().optional(),
    allocation_timeout: z.number().int().positive().optional(),
    job_priority: z.number().int().min(0).optional(),
    job_status_webhook: z.string().url().optional(),
    provision_data: phaseData.optional(),
    firmware_update_data: phaseData.optional(),
    test_data: phaseData.optional(),
    allocate_data: phaseData.optional(),
    reserve_data: phaseData.optional(),
  })
  .strict();

export type SubmitReply = { job_id: string; job_queue: string } | { error: string };

/** The job to post, or why not: it must be JSON, match the schema and name one of `queues` (or none: the first). */
export function checkSubmission(payload: Buffer, queues: readonly string[]): { job: Record<string, unknown> } | { error: string } {
  if (payload.length > SUBMIT_MAX_BYTES) return { error: `refused: larger than ${SUBMIT_MAX_BYTES} bytes` };
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch {
    return { error: 'refused: not JSON' };
  }
  const parsed = submittedJobSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue?.path.join('.') || 'job';
    return { error: `refused: ${where}: ${issue?.code === 'unrecognized_keys' ? 'not a key a submitted job may set' : (issue?.message ?? 'invalid')}` };
  }
  const queue = parsed.data.job_queue ?? queues[0];
  if (queue === undefined || !queues.includes(queue)) return { error: `refused: job_queue ${JSON.stringify(queue)} is not one of this agent's queues (${queues.join(', ')})` };
  return { job: { ...parsed.data, job_queue: queue } };
}

export class MqttSubmitter {
  private waiting: Buffer[] = [];
  private busy = false;

  constructor(
    private readonly link: MqttLink,
    private readonly topics: AgentTopics,
    private readonly queues: readonly string[],
    private readonly api: ServerApi,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.link.subscribe(this.topics.submit, (payload, retained) => this.received(payload, retained));
  }

  private received(payload: Buffer, retained: boolean): void {
    // A retained job would come back at every reconnect, and be submitted again each time.
    if (retained) {
      this.reply({ error: 'refused: a retained message (it would be submitted again at every reconnect); publish it without retain' });
      return;
    }
    if (this.waiting.length >= SUBMIT_WAITING_MAX) {
      this.reply({ error: `refused: ${SUBMIT_WAITING_MAX} submissions already wait; try again` });
      return;
    }
    this.waiting.push(payload);
    if (!this.busy) void this.drain();
  }

  private async drain(): Promise<void> {
    this.busy = true;
    try {
      for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) this.reply(await this.submit(next));
    } finally {
      this.busy = false;
    }
  }

  private async submit(payload: Buffer): Promise<SubmitReply> {
    const checked = checkSubmission(payload, this.queues);
    if ('error' in checked) return checked;
    try {
      const jobId = await this.api.submitJob(checked.job);
      this.log.info(`mqtt: submitted job ${jobId} on ${String(checked.job['job_queue'])}`);
      return { job_id: jobId, job_queue: String(checked.job['job_queue']) };
    } catch (error) {
      return { error: `the server did not take the job: ${(error as Error).message}` };
    }
  }

  private reply(reply: SubmitReply): void {
    this.link.publish(this.topics.submitStatus, JSON.stringify(reply), { retain: false });
  }
}
