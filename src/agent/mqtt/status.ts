/**
 * What the agent publishes over MQTT, built from what AgentStatus is told (status.ts):
 * - `<prefix>/<agent_id>/status`, retained, on every change: AgentStatusMessage; the last will
 *   (and a clean stop) set it to `offline`;
 * - `<prefix>/<agent_id>/last_job`, retained: LastJobMessage;
 * - `<prefix>/<agent_id>/log`, not retained: LogMessage, the live output as it is cut for the
 *   server (already masked: the job's secrets never reach it).
 * Payloads are documented in docs/observability.md.
 */
import type { LogFragment, LogKind } from '../api';
import type { Publish } from './link';
import type { AgentTopics } from './topics';
import type { FinishedJob, StateChange, StatusWatcher } from '../status';

export interface AgentStatusMessage {
  state: string;
  job_id: string | null;
  phase: string | null;
  /** When `state` last changed (ISO 8601). */
  since: string;
  queues: string[];
  /** The server answers and no failed recovery holds the device. */
  healthy: boolean;
  offline_reason: string | null;
}

export interface LastJobMessage {
  id: string;
  state: string;
  /** Exit code of each phase that ran. */
  phases: Record<string, number>;
  finished_at: string;
}

export interface LogMessage {
  job_id: string;
  kind: LogKind;
  phase: string;
  fragment_number: number;
  timestamp: string;
  text: string;
}

/** The reason the status gives when the agent is gone without a word (the broker's last will). */
export const WILL_REASON = 'the agent went away (MQTT last will)';
export const STOPPED_REASON = 'the agent stopped';

export class MqttStatusPublisher implements StatusWatcher {
  private view: AgentStatusMessage;

  constructor(
    private readonly publish: Publish,
    private readonly topics: AgentTopics,
    queues: readonly string[],
    private readonly now: () => number = Date.now,
  ) {
    this.view = { state: 'waiting', job_id: null, phase: null, since: this.iso(), queues: [...queues], healthy: true, offline_reason: null };
  }

  /** The message the broker publishes if the agent dies: `offline`, with why. */
  willMessage(): string {
    return JSON.stringify(this.offline(WILL_REASON));
  }

  /** The message a clean stop leaves. */
  stoppedMessage(): { topic: string; payload: string } {
    return { topic: this.topics.status, payload: JSON.stringify(this.offline(STOPPED_REASON)) };
  }

  state(change: StateChange): void {
    const next: AgentStatusMessage = {
      ...this.view,
      ...(change.state !== undefined ? { state: change.state } : {}),
      ...(change.jobId !== undefined ? { job_id: change.jobId } : {}),
      ...(change.phase !== undefined ? { phase: change.phase } : {}),
      ...(change.healthy !== undefined ? { healthy: change.healthy } : {}),
      ...(change.offlineReason !== undefined ? { offline_reason: change.offlineReason } : {}),
    };
    if (next.state !== this.view.state) next.since = this.iso();
    if (JSON.stringify(next) === JSON.stringify(this.view)) return;
    this.view = next;
    this.publish(this.topics.status, JSON.stringify(next), { retain: true });
  }

  /** Publishes the current status (at start, before anything changed). */
  announce(): void {
    this.publish(this.topics.status, JSON.stringify(this.view), { retain: true });
  }

  jobFinished(job: FinishedJob): void {
    const message: LastJobMessage = { id: job.id, state: job.state, phases: job.phases, finished_at: this.iso() };
    this.publish(this.topics.lastJob, JSON.stringify(message), { retain: true });
  }

  liveOutput(jobId: string, kind: LogKind, fragment: LogFragment): void {
    const message: LogMessage = { job_id: jobId, kind, phase: fragment.phase, fragment_number: fragment.fragment_number, timestamp: fragment.timestamp, text: fragment.log_data };
    this.publish(this.topics.log, JSON.stringify(message), { retain: false });
  }

  private offline(reason: string): AgentStatusMessage {
    return { ...this.view, state: 'offline', phase: null, since: this.iso(), healthy: false, offline_reason: reason };
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}
