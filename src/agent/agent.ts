/**
 * The agent's loop: report in, then until told to stop: send results left over, honour offline
 * states and markers, take a job, run it, report it. Safe restarts (SIGUSR1 or server state
 * `restart`) end the loop only between jobs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AgentData, Job, ServerApi } from './api';
import { interruptedJobs, JobFiles } from './bookkeeping';
import { defaultContainment } from './containment';
import type { AgentConfig } from './config';
import { JobRunner, type JobDeps, type JobOutcome, type JobTiming } from './job';
import { isAgentId } from './names';
import type { AgentMetrics } from './metrics';
import { Outbox } from './outbox';
import { AgentStatus, type FinishedJob, type StatusWatcher } from './status';

/** Server states in which the agent takes no jobs and defers restarts. */
const HOLD_STATES = new Set(['offline', 'maintenance']);
/**
 * The comment the agent posts with `offline` while a marker file holds it; the prefix tells its
 * own hold from an operator's on the server, so removing the marker brings it back.
 */
export const MARKER_COMMENT_PREFIX = 'offline marker: ';
/** A marker's reason is its first line; anyone may write in /tmp, so it is read bounded. */
const MARKER_READ_MAX = 1024;
const MARKER_REASON_MAX = 200;

/** What a marker file holds: nothing there, its text, or why it does not count. */
export type MarkerRead = { found: false } | { found: true; text: string } | { found: true; refused: string };

/**
 * Who may hold an agent with a marker: its own user and root. Anyone may create files in /tmp,
 * and a file another account made (a job's link on another agent, a stranger) does not count.
 */
export function markerOwners(agentUid: number): number[] {
  return [agentUid, 0];
}

/**
 * A marker file, opened without following a link or waiting on a FIFO (the agent and the
 * charm's root actions alike); it counts only as a regular file of one of `owners`.
 */
export function readMarkerFile(file: string, owners: readonly number[], cap: number): MarkerRead {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { found: false };
    return { found: true, refused: code === 'ELOOP' ? 'a link (not read)' : `unreadable: ${code ?? 'error'}` };
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return { found: true, refused: 'not a regular file' };
    if (!owners.includes(stat.uid)) return { found: true, refused: `owned by uid ${stat.uid}, neither the agent's user nor root` };
    const buffer = Buffer.alloc(cap);
    return { found: true, text: buffer.subarray(0, fs.readSync(fd, buffer, 0, cap, 0)).toString('utf8') };
  } finally {
    fs.closeSync(fd);
  }
}

/** The marker's first line (its reason), one printable line. */
export function markerReason(text: string): string {
  return (text.split('\n')[0] ?? '').replace(/[\u0000-\u001f\u007f]/g, ' ').trim().slice(0, MARKER_REASON_MAX);
}

interface Hold {
  reason: string;
  fromServer: boolean;
  /** For a marker: the comment the server should show while it holds the agent. */
  comment?: string;
}
const REPOST_AGENT_DATA_MS = 24 * 3600 * 1000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

export type AgentExit = 'restart' | 'stopped';

export interface AgentDeps extends Omit<JobDeps, 'status'> {
  metrics: AgentMetrics;
  /** Where offline marker files are looked for (/tmp on a unit). */
  markerDir: string;
  /** The agent's directory name, when it differs from agent_id. */
  programName?: string;
  timing?: JobTiming;
  /** Told of each change of the agent's status (MQTT); none when MQTT is off. */
  statusWatcher?: StatusWatcher;
}

/**
 * `/tmp/TESTFLINGER-DEVICE-OFFLINE-<name>`, also without the dash before a trailing number. A name
 * that is not a valid agent id (`../`, a slash) has no marker: it would name another file.
 */
export function offlineMarkerNames(names: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const name of names.filter(isAgentId)) {
    forms.add(name);
    forms.add(name.replace(/-(\d+)$/, '$1'));
  }
  return [...forms].map((n) => `TESTFLINGER-DEVICE-OFFLINE-${n}`);
}

/** What the job's outcome says of it: its final state and each phase's exit code. */
function finishedJob(outcome: JobOutcome): FinishedJob {
  const { jobId, result } = outcome.entry;
  const status = (result['status'] ?? {}) as Record<string, number>;
  return { id: jobId, state: String(result['job_state'] ?? ''), phases: { ...status } };
}

export class Agent {
  private restartRequested = false;
  private wake = new AbortController();
  private readonly status: AgentStatus;
  private readonly outbox: Outbox;
  private lastFullReport = 0;
  private busy = false;

  constructor(private readonly deps: AgentDeps) {
    this.status = new AgentStatus(deps.api, deps.config.agent_id, deps.metrics, deps.log, deps.statusWatcher);
    this.outbox = new Outbox(deps.config.results_basedir, deps.api, deps.log);
  }

  get api(): ServerApi {
    return this.deps.api;
  }
  get config(): AgentConfig {
    return this.deps.config;
  }

  /** SIGUSR1: restart once no job is running (and the server does not hold the agent). */
  requestRestart(): void {
    this.restartRequested = true;
    this.deps.log.info(this.busy ? 'restart requested; will restart after the current job' : 'restart requested');
    this.wake.abort();
  }

  async run(shutdown: AbortSignal): Promise<AgentExit> {
    const { clock, log, config } = this.deps;
    await this.waitForServer(shutdown);
    await this.reportIn();
    await this.finishInterruptedJobs(shutdown);
    // After recovery, which names what each interrupted phase left in the job's log.
    await (this.deps.containment ?? defaultContainment()).sweep();
    let backoff = BACKOFF_FIRST_MS;
    while (!shutdown.aborted) {
      try {
        await this.flushOutbox();
        await this.status.flush();
        if (clock.now() - this.lastFullReport > REPOST_AGENT_DATA_MS) await this.reportIn();
        const data = await this.api.agentData(config.agent_id);
        this.status.polled(clock.now());
        const hold = this.holdReason(data);
        await this.showMarkerHold(data, hold);
        // A marker file holds the agent offline whatever the server says.
        this.status.betweenJobs(hold ? (hold.fromServer ? String(data?.state) : 'offline') : 'waiting', hold ? (hold.comment ?? hold.reason) : undefined);
        if (data?.state === 'restart') this.restartRequested = true;
        if (this.restartRequested && !(hold && hold.fromServer)) {
          await this.status.restarting();
          return 'restart';
        }
        if (hold) {
          log.debug(`not taking jobs: ${hold.reason}`);
        } else {
          const offer = await this.api.nextJob(this.queues(data), shutdown);
          backoff = BACKOFF_FIRST_MS;
          if (offer && 'refused' in offer) {
            // Nothing of it touched the disk or a URL; the server gets no answer for an id it
            // should never have sent, and the agent goes on polling.
            log.error(`refused a job from the server: ${offer.refused}`);
          } else if (offer) {
            await this.runJob(offer.job, shutdown);
            continue;
          }
        }
        backoff = BACKOFF_FIRST_MS;
        await this.idle(config.polling_interval * 1000, shutdown);
      } catch (error) {
        if (shutdown.aborted) break;
        this.status.serverUnreachable();
        log.warning(`server request failed, retrying in ${backoff / 1000}s: ${(error as Error).message}`);
        await this.idle(backoff, shutdown);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
        await this.waitForServer(shutdown);
      }
    }
    await this.outbox.flush().catch(() => undefined);
    return 'stopped';
  }

  /** Sends stored results; the metric counts what the server has not taken yet. */
  private async flushOutbox(): Promise<string[]> {
    const waiting = await this.outbox.flush();
    this.status.outboxWaiting(waiting.length);
    return waiting;
  }

  private async idle(ms: number, shutdown: AbortSignal): Promise<void> {
    this.wake = new AbortController();
    const stop = () => this.wake.abort();
    shutdown.addEventListener('abort', stop, { once: true });
    await this.deps.clock.sleep(ms, this.wake.signal);
    shutdown.removeEventListener('abort', stop);
  }

  /** `GET /v1` until the server answers (bounded waits, cut short by shutdown). */
  private async waitForServer(shutdown: AbortSignal): Promise<void> {
    let wait = BACKOFF_FIRST_MS;
    for (;;) {
      if (shutdown.aborted) return;
      const why = await this.api.whyDown(shutdown);
      if (why === undefined) return;
      // The reason (the client's message, its detail already quoted) tells a lab what to mend: an untrusted certificate, a refused port...
      this.deps.log.warning(`server ${this.api.client.baseUrl} is not answering (${why}); waiting ${wait / 1000}s`);
      await this.deps.clock.sleep(wait, shutdown);
      wait = Math.min(wait * 2, BACKOFF_MAX_MS);
    }
  }

  /**
   * Start-up report. An operator's offline/maintenance (and its comment) is kept; a `restart`
   * left by the previous process, or anything else, becomes `waiting`.
   */
  private async reportIn(): Promise<void> {
    const { config, log } = this.deps;
    let current: AgentData | undefined;
    try {
      current = await this.api.agentData(config.agent_id);
    } catch (error) {
      log.warning(`cannot read agent data: ${(error as Error).message}`);
    }
    const profile = {
      queues: config.job_queues,
      location: config.location ?? '',
      provision_type: config.provision_type ?? '',
      identifier: config.identifier ?? '',
    };
    await this.status.reportIn(profile, !current?.state || !HOLD_STATES.has(current.state));
    if (config.advertised_queues) await this.api.postQueues(config.advertised_queues).catch((e) => log.warning(e.message));
    if (config.advertised_images) await this.api.postImages(config.advertised_images).catch((e) => log.warning(e.message));
    this.lastFullReport = this.deps.clock.now();
  }

  /** An operator's hold on the server first; else a marker file (the server's `offline` with our own marker comment is not the operator's). */
  private holdReason(data: AgentData | undefined): Hold | undefined {
    const ownMarkerHold = data?.state === 'offline' && (data.comment ?? '').startsWith(MARKER_COMMENT_PREFIX);
    if (data?.state && HOLD_STATES.has(data.state) && !ownMarkerHold) return { reason: `server state ${data.state}${data.comment ? ` (${JSON.stringify(data.comment)})` : ''}`, fromServer: true };
    const names = [this.deps.config.agent_id, ...(this.deps.programName ? [this.deps.programName] : [])];
    for (const marker of offlineMarkerNames(names)) {
      const file = path.join(this.deps.markerDir, marker);
      const read = readMarkerFile(file, markerOwners(process.geteuid?.() ?? 0), MARKER_READ_MAX);
      if (!read.found) continue;
      if ('refused' in read) {
        this.deps.log.debug(`marker ${file} ignored: ${read.refused}`);
        continue;
      }
      return { reason: `marker file ${file}`, fromServer: false, comment: `${MARKER_COMMENT_PREFIX}${markerReason(read.text) || file}` };
    }
    return undefined;
  }

  /** The server shows a marker's hold as `offline` with its reason, and `waiting` once it is gone. */
  private async showMarkerHold(data: AgentData | undefined, hold: Hold | undefined): Promise<void> {
    if (hold?.comment !== undefined) {
      if (data?.state !== 'offline' || data.comment !== hold.comment) await this.status.markerHold(hold.comment);
    } else if (!hold && data?.state === 'offline' && (data.comment ?? '').startsWith(MARKER_COMMENT_PREFIX)) {
      await this.status.markerReleased();
    }
  }

  /** Queues to ask for: with restricted_to set by the server, only those queues. */
  private queues(data: AgentData | undefined): string[] {
    const restricted = data?.restricted_to ? Object.keys(data.restricted_to) : [];
    const allowed = this.deps.config.job_queues.filter((q) => restricted.length === 0 || restricted.includes(q));
    return allowed.length > 0 ? allowed : this.deps.config.job_queues;
  }

  private async runJob(job: Job, shutdown: AbortSignal): Promise<void> {
    this.busy = true;
    try {
      await this.status.jobTaken(job.job_id);
      const outcome = await new JobRunner(this.jobDeps(), job).run(shutdown);
      await this.endJob(outcome);
    } finally {
      this.busy = false;
      this.status.jobCleared();
    }
  }

  /** A job reports what happens to the agent's status, like the loop. */
  private jobDeps(): JobDeps {
    return { ...this.deps, status: this.status };
  }

  /**
   * Every job ends here, whether this process ran it or found it interrupted: the outcome is
   * delivered, then the server is told the agent is idle (no job, `waiting`), unless a failed
   * recovery keeps it offline.
   */
  private async endJob(outcome: JobOutcome): Promise<void> {
    await this.deliver(outcome);
    await this.status.jobEnded(finishedJob(outcome));
  }

  /** The outcome goes to disk first, then to the server; the run directory is removed. */
  private async deliver(outcome: JobOutcome): Promise<void> {
    const { config, log } = this.deps;
    const id = JSON.stringify(outcome.entry.jobId);
    this.outbox.store(outcome.entry);
    new JobFiles(config, outcome.entry.jobId).remove();
    const waiting = await this.flushOutbox();
    if (waiting.includes(outcome.entry.jobId)) log.warning(`job ${id}: results kept in ${JSON.stringify(config.results_basedir)} until the server takes them`);
    else log.info(`job ${id}: ${JSON.stringify(outcome.entry.result['job_state'])}`);
  }

  /**
   * A job left by a process that died mid-job (kill -9, power loss): reported as failed with
   * the reason, its cleanup run, before any new job is taken. The entry file takes the agent's
   * lock before the loop starts, so a job found here has no live owner.
   */
  private async finishInterruptedJobs(shutdown: AbortSignal): Promise<void> {
    for (const { job, progress } of interruptedJobs(this.deps.config.execution_basedir)) {
      this.deps.log.warning(`job ${JSON.stringify(job.job_id)} was interrupted in ${JSON.stringify(progress.phase ?? 'between phases')}; reporting it failed`);
      const runner = new JobRunner(this.jobDeps(), job, progress);
      await this.endJob(await runner.finishInterrupted(progress, shutdown));
    }
  }
}

