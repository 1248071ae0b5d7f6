/**
 * What the agent says about itself, from one place: the loop and the job runner report what
 * happens here, and this updates the metrics and posts the agent's state to the server. It alone
 * knows that a failed recovery keeps the agent offline after its job, where the end of a job
 * would otherwise post `waiting` over the `offline` the job just posted.
 */
import type { LogFragment, LogKind, ServerApi } from './api';
import type { Logger } from './logger';
import type { AgentMetrics, LiveLogCounts } from './metrics';
import { AgentReporter } from './reporter';

/** The labels of a phase's duration beyond agent and phase (upstream's). */
export interface PhaseLabels {
  identifier: string;
  release: string;
}

/** A change of what the agent says about itself; unset fields are unchanged. */
export interface StateChange {
  state?: string;
  jobId?: string | null;
  phase?: string | null;
  healthy?: boolean;
  offlineReason?: string | null;
}

/** A job's outcome as delivered: its final state and each phase's exit code. */
export interface FinishedJob {
  id: string;
  state: string;
  phases: Record<string, number>;
}

/** Told of what the agent says about itself as it changes (MQTT: mqtt/status.ts); none when MQTT is off. */
export interface StatusWatcher {
  state(change: StateChange): void;
  jobFinished(job: FinishedJob): void;
  liveOutput(jobId: string, kind: LogKind, fragment: LogFragment): void;
}

export class AgentStatus {
  private readonly reporter: AgentReporter;
  /** Set when the last job's recovery failed: its end leaves the agent offline. */
  private heldByRecovery = false;

  constructor(
    api: ServerApi,
    private readonly agentId: string,
    private readonly metrics: AgentMetrics,
    log: Logger,
    private readonly watcher?: StatusWatcher,
  ) {
    this.reporter = new AgentReporter(api, agentId, log);
    metrics.setAgent(agentId);
  }

  /** Sends what earlier posts could not (the server was away). */
  async flush(): Promise<boolean> {
    return this.reporter.flush();
  }

  /** The start-up report: the agent's profile and, unless an operator holds it, `waiting`. */
  async reportIn(profile: Record<string, unknown>, idle: boolean): Promise<void> {
    await this.reporter.setData(idle ? { ...profile, state: 'waiting', comment: '' } : profile);
  }

  /** The server answered a poll. */
  polled(nowMs: number): void {
    this.metrics.markPoll(nowMs);
    this.watcher?.state({ healthy: !this.heldByRecovery });
  }

  /** The server did not answer: the agent retries, and is not healthy meanwhile. */
  serverUnreachable(): void {
    this.watcher?.state({ healthy: false });
  }

  /** Between jobs: `waiting`, or the state that holds the agent (the server's, or `offline` for a marker), with why. */
  betweenJobs(state: string, holdReason?: string): void {
    this.metrics.setState(state);
    this.watcher?.state({ state, phase: null, offlineReason: state === 'waiting' ? null : (holdReason ?? null) });
  }

  /** A marker file holds the agent: the server shows `offline` with the marker's comment. */
  async markerHold(comment: string): Promise<void> {
    await this.reporter.setData({ state: 'offline', comment });
  }

  /** The marker is gone: the server shows `waiting` again. */
  async markerReleased(): Promise<void> {
    await this.reporter.setData({ state: 'waiting', comment: '' });
  }

  async restarting(): Promise<void> {
    await this.reporter.setData({ state: 'restart', comment: 'Restarting: safe restart requested' });
    this.metrics.setState('restart');
    this.watcher?.state({ state: 'restart', offlineReason: null });
  }

  /** The agent took a job from the server. */
  async jobTaken(jobId: string): Promise<void> {
    this.heldByRecovery = false;
    this.metrics.setJob(jobId);
    this.watcher?.state({ jobId });
    await this.reporter.setData({ job_id: jobId });
  }

  /** The job's run directory is ready and its phases are about to run. */
  jobStarted(liveLogs: () => LiveLogCounts): void {
    this.metrics.jobs.inc({ agent_id: this.agentId });
    this.metrics.trackLiveLogs(liveLogs);
  }

  async phaseStarted(phase: string): Promise<void> {
    await this.reporter.setData({ state: phase, comment: '' });
    this.metrics.setState(phase);
    this.watcher?.state({ state: phase, phase, offlineReason: null });
  }

  async phaseEnded(jobId: string, phase: string, exitCode: number, seconds: number, labels: PhaseLabels): Promise<void> {
    if (phase === 'provision') {
      await this.reporter.provisionLog({ job_id: jobId, exit_code: exitCode, detail: exitCode === 0 ? 'provision_success' : 'provision_fail' });
    }
    this.metrics.phaseDuration.observe({ agent_id: this.agentId, test_phase: phase, ...labels }, seconds);
    if (exitCode !== 0) this.metrics.failures.inc({ agent_id: this.agentId, test_phase: phase });
  }

  /** The device could not be brought back: the agent stays offline, past the end of its job. */
  async recoveryFailed(comment: string): Promise<void> {
    this.metrics.recoveryFailures.inc({ agent_id: this.agentId });
    this.heldByRecovery = true;
    await this.reporter.setData({ state: 'offline', comment });
    this.metrics.setState('offline');
    this.watcher?.state({ state: 'offline', phase: null, healthy: false, offlineReason: comment });
  }

  /**
   * A job's outcome is delivered (run here, or found interrupted): the server is told the agent
   * has no job and is `waiting`, unless that job's recovery failed.
   */
  async jobEnded(job: FinishedJob): Promise<void> {
    const data: Record<string, unknown> = { job_id: '' };
    if (!this.heldByRecovery) data['state'] = 'waiting';
    this.watcher?.jobFinished(job);
    this.watcher?.state({ jobId: null, ...(this.heldByRecovery ? {} : { state: 'waiting', phase: null, offlineReason: null }) });
    await this.reporter.setData(data);
  }

  /** A fragment of live output, cut for the server (masked already). */
  liveOutput(jobId: string, kind: LogKind, fragment: LogFragment): void {
    this.watcher?.liveOutput(jobId, kind, fragment);
  }

  /** No job runs any more (whether or not it ended well). */
  jobCleared(): void {
    this.metrics.setJob(undefined);
    this.metrics.trackLiveLogs(undefined);
  }

  /** Finished jobs whose results wait on disk for the server. */
  outboxWaiting(results: number): void {
    this.metrics.setOutbox(results);
  }
}
