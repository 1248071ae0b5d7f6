/**
 * The job's status webhook: when the job names one, each event of the job (start, each phase's
 * start and end, cancel, end) goes to the server with every event before it, as upstream sends
 * them; the server forwards them to the webhook.
 */
import type { Job, ServerApi } from './api';
import type { Clock } from './clock';
import type { Logger } from './logger';

interface JobEvent {
  event_name: string;
  timestamp: string;
  detail: string;
}

export class JobEvents {
  private readonly events: JobEvent[] = [];

  constructor(
    private readonly api: ServerApi,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly agentId: string,
    private readonly job: Job,
  ) {}

  /** Not awaited: a slow webhook never holds the job up; a failed post is logged. */
  add(name: string, detail: string): void {
    if (!this.job.job_status_webhook) return;
    this.events.push({ event_name: name, timestamp: new Date(this.clock.now()).toISOString(), detail });
    void this.api
      .postJobEvents(this.job.job_id, {
        agent_id: this.agentId,
        job_queue: this.job.job_queue,
        job_status_webhook: this.job.job_status_webhook,
        events: [...this.events],
      })
      .catch((e) => this.log.warning(`job events not posted: ${e.message}`));
  }
}
