/**
 * One job, start to finish: the phases in order from a table, each in the job's run directory
 * with its timeouts, output streamed live, cancel honoured, cleanup always. The job's files and
 * the agent's bookkeeping are bookkeeping.ts's; <phase>.log, phaselogs.ts's; the serial log's
 * stream, serialtail.ts's; the status webhook, webhook.ts's; what the agent reports about
 * itself (metrics, its state on the server), status.ts's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import type { Job, LogFragment, ServerApi } from './api';
import { unpackAttachments } from './attachments';
import { JobFiles, type Progress } from './bookkeeping';
import type { Clock } from './clock';
import type { AgentConfig, Phase } from './config';
import { DEFAULT_LIVE_LOG, LiveLog, type LiveLogOptions } from './logstream';
import type { Logger } from './logger';
import { SecretMasker } from '../common/masker';
import type { OutboxEntry } from './outbox';
import { EXIT_RECOVERY_FAILED, SERVER_TOKEN_FD_ENV, serialLogFile } from '../common/contract';
import { PhaseLogFiles } from './phaselogs';
import { sandboxSecretArgs, SECRETS_PHASE, splitSecrets } from './secrets';
import { feedAccessToken, phaseGetsServerToken } from './tokenfeed';
import { runPhaseProcess, SANDBOX_ARGS_FD, SERVER_TOKEN_FD, type PhaseProcessOptions, type PhaseProcessResult, type StopReason } from './process';
import { defaultContainment, describeLeftovers, endRecordedScope, processGroupScope, type Containment, type LeftoverProcess, type PhaseScope } from './containment';
import { sandboxArgv, type SandboxSettings } from './containment-sandbox';
import { tailSerial } from './serialtail';
import type { AgentStatus } from './status';
import { JobEvents } from './webhook';

/** Recorded for a phase the agent had to stop (timeout, cancel, shutdown). */
export const EXIT_STOPPED = 137;
export const DEFAULT_GLOBAL_TIMEOUT_S = 4 * 3600;
export const DEFAULT_OUTPUT_TIMEOUT_S = 15 * 60;
const DEFAULT_RESERVE_TIMEOUT_S = 3600;
const MAX_RESERVE_TIMEOUT_S = 6 * 3600;
/** Extra time for the reserve phase beyond the reservation itself (setup of keys, messages). */
const RESERVE_MARGIN_S = 300;
const CLEANUP_TIMEOUT_S = 3600;

interface PhaseRule {
  phase: Phase;
  /** Skipped unless the job has <phase>_data without skip: true. */
  needsData: boolean;
  /** Cancel is not honoured while the device is being provisioned. */
  cancellable: boolean;
  /** A failure ends the job (test failures do not: the results are the point). */
  failureEndsJob: boolean;
  timeout: 'global' | 'reserve';
  outputTimeout: boolean;
}

export const PHASE_RULES: readonly PhaseRule[] = [
  { phase: 'setup', needsData: false, cancellable: true, failureEndsJob: true, timeout: 'global', outputTimeout: false },
  { phase: 'provision', needsData: true, cancellable: false, failureEndsJob: true, timeout: 'global', outputTimeout: false },
  { phase: 'firmware_update', needsData: true, cancellable: true, failureEndsJob: true, timeout: 'global', outputTimeout: false },
  { phase: 'test', needsData: true, cancellable: true, failureEndsJob: false, timeout: 'global', outputTimeout: true },
  { phase: 'allocate', needsData: true, cancellable: true, failureEndsJob: true, timeout: 'global', outputTimeout: false },
  { phase: 'reserve', needsData: true, cancellable: true, failureEndsJob: true, timeout: 'reserve', outputTimeout: false },
];

export interface JobTiming {
  /** How often the server is asked whether the job was cancelled while a phase runs. */
  cancelPollMs: number;
  /** How often an allocated job asks whether its parent finished. */
  allocatePollMs: number;
  liveLog: LiveLogOptions;
}

export const DEFAULT_JOB_TIMING: JobTiming = { cancelPollMs: 2000, allocatePollMs: 5000, liveLog: DEFAULT_LIVE_LOG };

export interface JobDeps {
  api: ServerApi;
  config: AgentConfig;
  clock: Clock;
  log: Logger;
  /** Told what happens to the job: it keeps the metrics and the agent's state on the server. */
  status: AgentStatus;
  /** Environment of the agent, the base of every phase's environment. */
  baseEnv: Record<string, string>;
  timing?: JobTiming;
  /** Where phases run so that all they start ends with them; chosen for the process by default. */
  containment?: Containment;
  /** The test phase's sandbox; undefined runs it on the bare host. */
  testSandbox?: SandboxSettings;
}

export interface JobOutcome {
  entry: OutboxEntry;
  stoppedBy?: StopReason;
}

function phaseData(job: Job, phase: Phase): Record<string, unknown> | undefined {
  const data = (job as Record<string, unknown>)[`${phase}_data`];
  return typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : undefined;
}

function secretsOf(data: Record<string, unknown> | undefined): Record<string, string> {
  const secrets = data?.['secrets'];
  if (typeof secrets !== 'object' || secrets === null) return {};
  return Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, String(v)]));
}

export class JobRunner {
  private readonly timing: JobTiming;
  private readonly files: JobFiles;
  private readonly runDir: string;
  private readonly progress: Progress;
  private readonly output: LiveLog;
  private readonly serial: LiveLog;
  private readonly masker: SecretMasker;
  /** Every secret value of the job, for the maskers of its output streams. */
  private readonly secretValues: string[];
  private readonly events: JobEvents;
  private readonly logs: PhaseLogFiles;
  private jobState: 'complete' | 'cancelled' = 'complete';
  private deviceInfo: unknown;

  constructor(private readonly deps: JobDeps, private readonly job: Job, resumed?: Progress) {
    this.timing = deps.timing ?? DEFAULT_JOB_TIMING;
    this.files = new JobFiles(deps.config, job.job_id);
    this.runDir = this.files.runDir;
    this.progress = { status: {}, phase: null, startedAt: deps.clock.now(), nextFragment: resumed?.nextFragment ?? { output: 0, serial: 0 } };
    const numbering = (kind: 'output' | 'serial') => ({
      first: this.progress.nextFragment?.[kind] ?? 0,
      onNext: (next: number) => {
        if (this.progress.nextFragment) this.progress.nextFragment[kind] = next;
        this.saveProgress();
      },
    });
    const watched = (kind: 'output' | 'serial') => (fragment: LogFragment) => deps.status.liveOutput(job.job_id, kind, fragment);
    this.output = new LiveLog(deps.api, job.job_id, 'output', deps.clock, this.timing.liveLog, numbering('output'), watched('output'));
    this.serial = new LiveLog(deps.api, job.job_id, 'serial', deps.clock, this.timing.liveLog, numbering('serial'), watched('serial'));
    this.secretValues = PHASE_RULES.flatMap((r) => Object.values(secretsOf(phaseData(job, r.phase))));
    this.masker = new SecretMasker(this.secretValues);
    this.events = new JobEvents(deps.api, deps.clock, deps.log, deps.config.agent_id, job);
    this.logs = new PhaseLogFiles(this.runDir, (phase, note) => this.output.write(phase, note));
  }

  /** Runs the job; `shutdown` (SIGTERM) stops the running phase, and the job is still reported. */
  async run(shutdown: AbortSignal): Promise<JobOutcome> {
    const { log, status } = this.deps;
    log.info(`job ${this.job.job_id}: starting`);
    this.prepareRunDir();
    status.jobStarted(() => ({ queued: this.output.queued + this.serial.queued, dropped: this.output.dropped + this.serial.dropped }));
    this.event('job_start', '');
    await this.fetchAttachments();
    const deadline = this.deps.clock.now() + this.globalTimeoutS() * 1000;
    let recoveryFailedIn: Phase | undefined;
    let stoppedBy: StopReason | undefined;
    for (const rule of PHASE_RULES) {
      if (!this.shouldRun(rule)) continue;
      if (shutdown.aborted) break;
      if (await this.isCancelled()) {
        this.cancelled();
        break;
      }
      const result = await this.runPhase(rule, shutdown, deadline);
      if (result.exitCode === EXIT_RECOVERY_FAILED) {
        recoveryFailedIn = rule.phase;
        break;
      }
      if (result.stoppedBy) {
        stoppedBy = result.stoppedBy;
        break;
      }
      if (result.exitCode !== 0 && rule.failureEndsJob) break;
      // Only a child of a multi-device job has something to wait for.
      if (rule.phase === 'allocate' && this.job.parent_job_id) await this.waitWhileAllocated(shutdown, deadline);
    }
    await this.runCleanup(shutdown);
    // After cleanup, whose own state post would otherwise replace the offline one.
    if (recoveryFailedIn) await this.recoveryFailed(recoveryFailedIn);
    this.event('job_end', this.jobState);
    return { entry: await this.outcome(), ...(stoppedBy ? { stoppedBy } : {}) };
  }

  /**
   * Ends a job a previous agent process left mid-way: the phase it was in is marked stopped
   * with the reason in the job's output, cleanup runs, and the outcome is returned.
   */
  async finishInterrupted(progress: Progress, shutdown: AbortSignal): Promise<JobOutcome> {
    Object.assign(this.progress.status, progress.status);
    const phase = progress.phase ?? 'setup';
    if (progress.phase) this.progress.status[phase] = EXIT_STOPPED;
    this.ensureRunDir();
    // The killed agent's phase may still run (in its cgroup or process group): end it first.
    const leftovers = await endRecordedScope(progress.phaseScope, progress.phasePid);
    this.emit(phase, `\nERROR: the agent stopped unexpectedly during ${phase} (killed or crashed); this job is reported as failed\n`);
    this.reportLeftovers(phase, leftovers);
    this.endOutput(phase);
    this.saveProgress();
    await this.deps.api.postResult(this.job.job_id, { status: { ...this.progress.status } }).catch(() => undefined);
    await this.runCleanup(shutdown);
    this.event('job_end', 'interrupted');
    return { entry: await this.outcome() };
  }

  private prepareRunDir(): void {
    this.files.prepare(this.job, this.deps.log);
    this.saveProgress();
  }

  private saveProgress(): void {
    this.files.saveProgress(this.progress);
  }

  private shouldRun(rule: PhaseRule): boolean {
    if (!this.deps.config[`${rule.phase}_command`]) return false;
    if (!rule.needsData) return true;
    const data = phaseData(this.job, rule.phase);
    return data !== undefined && data['skip'] !== true;
  }

  private globalTimeoutS(): number {
    const device = this.deps.config.global_timeout ?? DEFAULT_GLOBAL_TIMEOUT_S;
    return Math.min(this.job.global_timeout ?? device, device);
  }

  private outputTimeoutS(): number {
    const device = this.deps.config.output_timeout ?? DEFAULT_OUTPUT_TIMEOUT_S;
    return Math.min(this.job.output_timeout ?? device, device);
  }

  private reserveTimeoutS(): number {
    const asked = Number(phaseData(this.job, 'reserve')?.['timeout'] ?? DEFAULT_RESERVE_TIMEOUT_S);
    return Math.min(Number.isFinite(asked) && asked > 0 ? asked : DEFAULT_RESERVE_TIMEOUT_S, MAX_RESERVE_TIMEOUT_S) + RESERVE_MARGIN_S;
  }

  /** Downloaded beside the run directory (not into memory), unpacked, then removed. */
  private async fetchAttachments(): Promise<void> {
    if (this.job.attachments_status !== 'complete') return;
    const archive = this.files.attachmentsArchive;
    try {
      await this.deps.api.downloadAttachments(this.job.job_id, archive, this.deps.config.attachments_max_bytes);
      const refused = await unpackAttachments(archive, this.runDir);
      for (const r of refused) this.emit('setup', `attachment refused: ${r}\n`);
    } catch (error) {
      this.emit('setup', `attachments could not be fetched or unpacked: ${(error as Error).message}\n`);
    } finally {
      fs.rmSync(archive, { force: true });
    }
  }

  private async isCancelled(): Promise<boolean> {
    try {
      return (await this.deps.api.jobState(this.job.job_id)) === 'cancelled';
    } catch {
      return false;
    }
  }

  private cancelled(): void {
    this.jobState = 'cancelled';
    this.event('cancelled', '');
  }

  private emit(phase: string, text: string): void {
    const safe = this.masker.push(text);
    if (!safe) return;
    this.logs.append(phase, safe);
    this.output.write(phase, safe);
  }

  private endOutput(phase: string): void {
    const rest = this.masker.end();
    if (rest) {
      this.output.write(phase, rest);
      this.logs.append(phase, rest);
    }
    this.logs.close(phase);
  }

  /** The agent's environment and conf values: every phase's environment, without any secret. */
  private phaseEnv(): Record<string, string> {
    const env: Record<string, string> = { ...this.deps.baseEnv };
    for (const [key, value] of Object.entries(this.deps.config)) if (typeof value === 'string') env[key] = value;
    return env;
  }

  /**
   * The secrets the phase's command gets: only the test phase's, as upstream (its server resolves
   * test_data.secrets alone). Those of another phase, a bad name or a variable the agent sets
   * are dropped with a note; their values are masked all the same.
   */
  private phaseSecrets(phase: Phase, env: Record<string, string>): Record<string, string> {
    const secrets = secretsOf(phaseData(this.job, phase));
    if (phase !== SECRETS_PHASE) {
      if (Object.keys(secrets).length > 0) this.secretNote(phase, `${phase}_data.secrets not passed: only the ${SECRETS_PHASE} phase gets secrets, as upstream`);
      return {};
    }
    const { allowed, refused } = splitSecrets(secrets, new Set(Object.keys(env)));
    for (const { name, reason } of refused) this.secretNote(phase, `secret ${JSON.stringify(name)} not passed to the ${phase} phase: ${reason}`);
    return allowed;
  }

  private secretNote(phase: Phase, note: string): void {
    this.deps.log.warning(`job ${JSON.stringify(this.job.job_id)}: ${note}`);
    this.emit(phase, `WARNING: ${note}\n`);
  }

  private async runPhase(rule: PhaseRule, shutdown: AbortSignal, deadline: number): Promise<{ exitCode: number; stoppedBy?: StopReason }> {
    const { api, config, clock, status, log } = this.deps;
    const { phase } = rule;
    this.progress.phase = phase;
    this.saveProgress();
    await api.postResult(this.job.job_id, { job_state: phase }).catch((e) => log.warning(`job_state ${phase} not posted: ${e.message}`));
    await status.phaseStarted(phase);
    this.event(`${phase}_start`, '');
    log.info(`job ${this.job.job_id}: ${phase}`);
    this.ensureRunDir();

    const stopper = new AbortController();
    let stopReason: StopReason = 'shutdown';
    const onShutdown = () => {
      stopReason = 'shutdown';
      stopper.abort();
    };
    shutdown.addEventListener('abort', onShutdown, { once: true });
    const cancelWatch = rule.cancellable ? this.watchCancel(() => {
      stopReason = 'cancelled';
      stopper.abort();
    }) : undefined;
    const serialTail = tailSerial(path.join(this.runDir, serialLogFile(phase)), this.serial, phase, this.secretValues, this.timing.liveLog.intervalMs);
    const started = clock.now();
    const timeoutMs = rule.timeout === 'reserve' ? this.reserveTimeoutS() * 1000 : Math.max(0, deadline - started);
    this.emit(phase, `*** testflinger ${phase} phase on ${config.agent_id} (job ${this.job.job_id})\n`);
    const sandbox = phase === 'test' ? this.deps.testSandbox : undefined;
    const result: PhaseProcessResult = sandbox?.unusable
      ? this.refuseUnsandboxed(phase, sandbox.unusable)
      : await this.runContained(phase, sandbox, {
          timeoutMs,
          ...(rule.outputTimeout ? { outputTimeoutMs: this.outputTimeoutS() * 1000 } : {}),
          stop: { signal: stopper.signal, reason: () => stopReason },
        });
    delete this.progress.phasePid;
    delete this.progress.phaseScope;
    shutdown.removeEventListener('abort', onShutdown);
    cancelWatch?.();
    serialTail();
    const exitCode = result.stoppedBy ? EXIT_STOPPED : result.exitCode;
    if (result.stoppedBy) this.emit(phase, `\n${this.stopMessage(result.stoppedBy, phase)}\n`);
    this.reportLeftovers(phase, result.leftovers);
    this.endOutput(phase);
    void this.output.flush();

    this.progress.status[phase] = exitCode;
    this.progress.phase = null;
    this.saveProgress();
    this.readDeviceInfo();
    await api.postResult(this.job.job_id, { status: { ...this.progress.status } }).catch((e) => log.warning(`status not posted: ${e.message}`));
    const labels = { identifier: config.identifier ?? '', release: String(phaseData(this.job, 'provision')?.['distro'] ?? '') };
    await status.phaseEnded(this.job.job_id, phase, exitCode, (clock.now() - started) / 1000, labels);
    this.event(`${phase}_${exitCode === 0 ? 'success' : 'fail'}`, `exit code ${exitCode}`);
    if (result.stoppedBy === 'cancelled') this.cancelled();
    return { exitCode, ...(result.stoppedBy ? { stoppedBy: result.stoppedBy } : {}) };
  }

  /** The phase command inside its containment scope (and the sandbox, when given), recorded for recovery. */
  private async runContained(
    phase: Phase,
    sandbox: SandboxSettings | undefined,
    limits: Pick<PhaseProcessOptions, 'timeoutMs' | 'outputTimeoutMs' | 'stop'>,
  ): Promise<PhaseProcessResult> {
    const { config, clock } = this.deps;
    const scope = this.openScope(phase, sandbox !== undefined);
    this.progress.phaseScope = scope.record;
    const home = this.deps.baseEnv['HOME'];
    const env = this.phaseEnv();
    const secrets = this.phaseSecrets(phase, env);
    const tokenFeed = this.tokenFeed(phase);
    delete env[SERVER_TOKEN_FD_ENV];
    if (tokenFeed) env[SERVER_TOKEN_FD_ENV] = String(SERVER_TOKEN_FD);
    // In the sandbox, bubblewrap sets the secrets for the command from a pipe: no program outside
    // it (the scope's wrapper, bubblewrap itself at its start) has them in its environment or argv.
    const piped = sandbox !== undefined && Object.keys(secrets).length > 0;
    return runPhaseProcess({
      command: config[`${phase}_command`],
      cwd: fs.existsSync(this.runDir) ? this.runDir : config.execution_basedir,
      env: piped ? env : { ...env, ...secrets },
      onOutput: (text) => this.emit(phase, text),
      clock,
      scope,
      ...(sandbox ? { sandbox: sandboxArgv(sandbox, { runDir: this.runDir, ...(home ? { home } : {}), ...(piped ? { argsFd: SANDBOX_ARGS_FD } : {}) }) } : {}),
      ...(piped ? { sandboxArgs: sandboxSecretArgs(secrets) } : {}),
      ...(tokenFeed ? { tokenFeed } : {}),
      ...limits,
      onSpawn: (pid) => {
        this.progress.phasePid = pid;
        this.saveProgress();
      },
    });
  }

  /** multi's provision and cleanup act on the server as the agent: they get its access token on a pipe (tokenfeed.ts). */
  private tokenFeed(phase: Phase): ((pipe: Writable) => () => void) | undefined {
    if (!phaseGetsServerToken(this.deps.config.provision_type, phase)) return undefined;
    const client = this.deps.api.client;
    return (pipe) => feedAccessToken(pipe, () => client.currentAccessToken(), (error) => this.deps.log.warning(`job ${this.job.job_id}: no access token for the ${phase} phase yet: ${error.message}`));
  }

  /** A scope that cannot be made (a cgroup removed under the agent) degrades to the process group, said in the log. */
  private openScope(phase: Phase, inNamespace: boolean): PhaseScope {
    try {
      return (this.deps.containment ?? defaultContainment()).openPhase(inNamespace);
    } catch (error) {
      this.emit(phase, `WARNING: the ${phase} phase runs in a process group only: ${(error as Error).message}\n`);
      return processGroupScope();
    }
  }

  /** Fails closed: an operator who asked for the sandbox never gets the job's commands run bare. */
  private refuseUnsandboxed(phase: Phase, why: string): PhaseProcessResult {
    this.emit(phase, `ERROR: the ${phase} phase was not run: its sandbox is unavailable (${why}); the operator can turn the sandbox off (test-sandbox=false)\n`);
    return { exitCode: 1, leftovers: [] };
  }

  private reportLeftovers(phase: string, leftovers: readonly LeftoverProcess[]): void {
    if (leftovers.length === 0) return;
    const line = describeLeftovers(phase, leftovers);
    this.deps.log.info(`job ${this.job.job_id}: ${line}`);
    this.emit(phase, `${line}\n`);
  }

  private ensureRunDir(): void {
    this.files.ensureRunDir();
  }

  private stopMessage(reason: StopReason, phase: string): string {
    switch (reason) {
      case 'timeout':
        return phase === 'reserve'
          ? `ERROR: reserve timeout reached (${this.reserveTimeoutS()}s), stopping ${phase}`
          : `ERROR: global timeout reached (${this.globalTimeoutS()}s), stopping ${phase}`;
      case 'output-timeout':
        return `ERROR: output timeout reached (${this.outputTimeoutS()}s without output), stopping ${phase}`;
      case 'cancelled':
        return `Job cancelled, stopping ${phase}`;
      case 'shutdown':
        return `Agent is shutting down, stopping ${phase}`;
    }
  }

  /** Polls the job's state while a phase runs; returns the function that stops polling. */
  private watchCancel(onCancel: () => void): () => void {
    let active = true;
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      if (!active) return;
      if (await this.isCancelled()) {
        if (active) onCancel();
        return;
      }
      if (active) timer = setTimeout(() => void tick(), this.timing.cancelPollMs);
    };
    timer = setTimeout(() => void tick(), this.timing.cancelPollMs);
    return () => {
      active = false;
      if (timer) clearTimeout(timer);
    };
  }

  private readDeviceInfo(): void {
    const info = this.files.readDeviceInfo();
    if (info !== undefined) this.deviceInfo = info;
  }

  private async recoveryFailed(phase: Phase): Promise<void> {
    this.event('recovery_fail', phase);
    const comment = `Device recovery failed in the ${phase} phase of job ${this.job.job_id}; set offline by the agent`;
    this.deps.log.error(comment);
    await this.deps.status.recoveryFailed(comment);
  }

  /** A multi-device job's allocated device waits for its parent job (or itself) to finish. */
  private async waitWhileAllocated(shutdown: AbortSignal, deadline: number): Promise<void> {
    const { api, clock, log } = this.deps;
    await api.postResult(this.job.job_id, { device_info: this.deviceInfo ?? {}, job_state: 'allocated' }).catch((e) => log.warning(e.message));
    const watched = this.job.parent_job_id as string;
    while (!shutdown.aborted && clock.now() < deadline) {
      const state = await api.jobState(watched).catch(() => undefined);
      if (state && ['complete', 'completed', 'cancelled'].includes(state)) return;
      if (state === 'cancelled' || (await this.isCancelled())) return this.cancelled();
      await clock.sleep(this.timing.allocatePollMs, shutdown);
    }
  }

  private async runCleanup(shutdown: AbortSignal): Promise<void> {
    if (!this.deps.config.cleanup_command) return;
    const rule: PhaseRule = { phase: 'cleanup', needsData: false, cancellable: false, failureEndsJob: false, timeout: 'global', outputTimeout: false };
    // Cleanup has its own bound: the job's deadline may already be spent.
    await this.runPhase(rule, shutdown, this.deps.clock.now() + CLEANUP_TIMEOUT_S * 1000);
  }

  private event(name: string, detail: string): void {
    this.events.add(name, detail);
  }

  private async outcome(): Promise<OutboxEntry> {
    this.logs.closeAll();
    const result: Record<string, unknown> = { status: { ...this.progress.status }, job_state: this.jobState };
    if (this.deviceInfo !== undefined) result['device_info'] = this.deviceInfo;
    const artifact = await this.files.packArtifact();
    return {
      jobId: this.job.job_id,
      result,
      fragments: { output: await this.output.close(), serial: await this.serial.close() },
      ...(artifact ? { artifact } : {}),
    };
  }
}
