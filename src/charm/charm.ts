/** The Testflinger agent host charm: the events and actions of DESIGN.md over the Host modules. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import {
  ActiveStatus,
  BlockedStatus,
  CharmBase,
  MaintenanceStatus,
  WaitingStatus,
  type ActionEvent,
  type Framework,
  type StatusBase,
} from '../ops';
import { credentialsFromSecret, obtainRefreshToken, tokenIsFresh, writeTokenFile } from './auth';
import { CharmConfigError, parseCharmConfig, type CharmConfig } from './config';
import { gitEnvironment } from './gitaccess';
import { hostFromEnv, type Host } from './host';
import { HOST_PACKAGES, installPackages, ensureUbuntuUser } from './packages';
import { reconcile, type ReconcileReport } from './reconcile';
import { buildRuntimeFromSource, currentRuntimeVersion, installRuntime } from './runtime';
import { renderPhaseScripts } from './scripts';
import { loadHostState, saveHostState, type HostState } from './state';
import { writeProgramFiles, type ProgramStatus } from './supervisor';
import { elide } from './values';

const updateConfigsParams = z.object({}).strict();
// Juju reads `juju run` values as YAML and checks them against actions.yaml: `branch=2024.10` is
// a number there and Juju refuses it before the charm runs (the README says to use --string-args).
const updateTestflingerParams = z.object({ branch: z.string().default('') }).strict();
/** Shown in status for at most this many agents; the log has them all. */
const STATUS_NAMES_SHOWN = 3;
/** Longer than the program files' startsecs (1 s): how long the status waits for STARTING agents. */
const STARTING_SETTLE_MS = 2500;
/** `juju status` shows one line; ours never grows past this. */
export const STATUS_MAX = 200;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, STATUS_NAMES_SHOWN).map((n) => elide(n, 40)).join(', ');
  return names.length > STATUS_NAMES_SHOWN ? `${shown} and ${names.length - STATUS_NAMES_SHOWN} more` : shown;
}

export class AgentHostCharm extends CharmBase {
  private readonly host: Host;
  private state: HostState;
  /** Set by the remove hook: a unit on its way out reports no status. */
  private removing = false;
  /** The config, parsed once per event (handlers, actions and the status all use it). */
  private parsedConfig: Promise<CharmConfig | CharmConfigError> | undefined;

  constructor(framework: Framework, host?: Host) {
    super(framework);
    this.host = host ?? hostFromEnv(process.env, framework.context.charmDir);
    this.state = loadHostState(this.host.paths);
    this.observe('install', () => this.onInstall());
    this.observe('config-changed', () => this.onReconcileHook({}));
    this.observe('upgrade-charm', () => this.onUpgradeCharm());
    this.observe('update-status', () => this.onUpdateStatus());
    this.observe('remove', () => this.onRemove());
    this.observe('secret-changed', () => this.onSecretChanged());
    this.observeAction('update-configs', updateConfigsParams, (event) => this.onUpdateConfigs(event));
    this.observeAction('update-testflinger', updateTestflingerParams, (event) => this.onUpdateTestflinger(event));
  }

  private get paths() {
    return this.host.paths;
  }

  private configOrError(): Promise<CharmConfig | CharmConfigError> {
    this.parsedConfig ??= this.model.getConfig().then((raw) => {
      try {
        return parseCharmConfig(raw);
      } catch (error) {
        if (error instanceof CharmConfigError) return error;
        throw error;
      }
    });
    return this.parsedConfig;
  }

  /** The validated config, or undefined (collectUnitStatus reports the bad option). */
  private async config(): Promise<CharmConfig | undefined> {
    const config = await this.configOrError();
    return config instanceof CharmConfigError ? undefined : config;
  }

  private async onInstall(): Promise<void> {
    await this.model.setUnitStatus(new MaintenanceStatus('installing the agent host'));
    if (this.paths.sandbox) {
      await this.log.info(`sandbox root ${this.paths.root}: skipping packages (${HOST_PACKAGES.join(', ')}) and the ubuntu user`);
    } else {
      await installPackages(this.host.run, HOST_PACKAGES);
      await ensureUbuntuUser(this.host.run);
    }
    this.installShippedRuntime();
    const config = await this.config();
    renderPhaseScripts(this.host.renderer, this.paths, config?.['config-dir'] ?? '');
    // On a unit the supervisor package starts its service at install; the sandbox does the same.
    await this.host.supervisor.ensureRunning(0);
    saveHostState(this.paths, this.state);
    if (!config) return;
    await this.ensureAgentToken(config, {});
    await this.reconcileAndRecord(config, { mayRestartSupervisor: true });
  }

  private installShippedRuntime(): { version: string; changed: boolean } {
    const result = installRuntime(this.paths, path.join(this.host.charmDir, 'dist'), 'charm', this.host.nodePath);
    this.state.runtimeVersion = result.version;
    return result;
  }

  private async onUpgradeCharm(): Promise<void> {
    const { version } = this.installShippedRuntime();
    await this.log.info(`agent runtime ${version} installed from the charm`);
    saveHostState(this.paths, this.state);
    await this.onReconcileHook({ restartAll: true });
  }

  private async onReconcileHook(options: { restartAll?: boolean }): Promise<void> {
    const config = await this.config();
    if (!config) return;
    await this.ensureAgentToken(config, {});
    // Program files point at the runtime: make sure it is there even if install never ran here.
    if (currentRuntimeVersion(this.paths) === null) this.installShippedRuntime();
    await this.reconcileAndRecord(config, options);
  }

  /**
   * Runs a reconcile; a failure is recorded (the host keeps its previous state) and shown in
   * the status rather than failing the hook, which Juju would only retry to the same end.
   */
  private async reconcileAndRecord(config: CharmConfig, options: { restartAll?: boolean; mayRestartSupervisor?: boolean }): Promise<ReconcileReport | undefined> {
    try {
      const report = await reconcile(this.host, config, this.state, { ...options, log: (m) => this.log.warning(m) });
      this.state.problem = null;
      // One log line when something happened; a quiet run costs no extra hook-tool call.
      if (report.added.length + report.removed.length + report.changed.length + report.restarted.length > 0) {
        await this.log.info(`agents: ${report.agents.length}; added [${report.added}] removed [${report.removed}] changed [${report.changed}] restarting [${report.restarted}]`);
      }
      return report;
    } catch (error) {
      this.state.problem = message(error);
      await this.log.error(`reconcile failed, previous state kept: ${this.state.problem}`);
      return undefined;
    } finally {
      saveHostState(this.paths, this.state);
    }
  }

  /** The unit is going away: its agents stop and their program files go (configs and runtime stay). */
  private async onRemove(): Promise<void> {
    const removed = writeProgramFiles(this.paths, new Map()).removed;
    if (removed.length > 0 && (await this.host.supervisor.isRunning())) await this.host.supervisor.update();
    this.state.appliedPrograms = {};
    this.state.appliedAgents = {};
    saveHostState(this.paths, this.state);
    await this.log.info(`removed the programs of ${removed.length} agents`);
    this.removing = true;
  }

  /** The credentials were rotated: fetch their new revision and a new token. */
  private async onSecretChanged(): Promise<void> {
    const config = await this.config();
    if (config) await this.ensureAgentToken(config, { force: true });
  }

  /**
   * Keeps the token file the agents sign in with: obtained when missing, older than three days,
   * or from other credentials or another server. A failure blocks, naming the option; the agents
   * keep running with the token they have.
   */
  private async ensureAgentToken(config: CharmConfig, options: { force?: boolean }): Promise<void> {
    const secretId = config['credentials-secret'];
    if (!secretId) {
      this.state.authProblem = null;
      return;
    }
    const source = `${secretId} ${config['testflinger-server']}`;
    const now = Date.now();
    if (!options.force && this.state.tokenSource === source && tokenIsFresh(this.paths.tokenFile, now)) return;
    try {
      const credentials = credentialsFromSecret(await this.model.getSecret({ id: secretId }, { refresh: !!options.force }));
      const token = await obtainRefreshToken(config['testflinger-server'], credentials);
      // root:ubuntu 0640 on a unit: the agents read it, and no job can replace it.
      const reader = this.paths.sandbox ? undefined : await ensureUbuntuUser(this.host.run);
      writeTokenFile(this.paths.tokenFile, token, now, reader && { uid: 0, gid: reader.gid });
      this.state.tokenSource = source;
      this.state.authProblem = null;
      await this.log.info(`agent refresh token obtained from ${config['testflinger-server']}`);
    } catch (error) {
      this.state.authProblem = `credentials-secret: ${message(error)}`;
      await this.log.error(this.state.authProblem);
    } finally {
      saveHostState(this.paths, this.state);
    }
  }

  private async onUpdateStatus(): Promise<void> {
    const current = await this.config();
    if (current) await this.ensureAgentToken(current, {});
    if (this.state.limitsRestartPending) {
      // Try again now: the agents may have finished their jobs.
      const config = await this.config();
      if (config) await this.reconcileAndRecord(config, {});
    }
    if (this.state.pendingRestart.length === 0) return;
    try {
      const { signalled, notRunning } = await this.host.supervisor.signal(this.state.pendingRestart);
      this.state.pendingRestart = this.state.pendingRestart.filter((n) => !signalled.includes(n) && !notRunning.includes(n));
      saveHostState(this.paths, this.state);
    } catch (error) {
      // Still pending: the status says so, and the next hook tries again.
      await this.log.warning(`restart of ${this.state.pendingRestart.join(', ')} still pending: ${message(error)}`);
    }
  }

  private async onUpdateConfigs(event: ActionEvent<z.output<typeof updateConfigsParams>>): Promise<void> {
    const config = await this.requireConfig(event);
    if (!config) return;
    await this.ensureAgentToken(config, {});
    const report = await this.reconcileAndRecord(config, {});
    if (!report) {
      await event.fail(`update-configs failed, previous configs kept: ${this.state.problem}`);
      return;
    }
    await event.setResults({
      revision: report.revision,
      agents: String(report.agents.length),
      added: report.added.join(','),
      removed: report.removed.join(','),
      changed: report.changed.join(','),
      restarted: report.restarted.join(','),
      invalid: Object.keys(report.invalid).join(','),
    });
  }

  private async onUpdateTestflinger(event: ActionEvent<z.output<typeof updateTestflingerParams>>): Promise<void> {
    const config = await this.requireConfig(event);
    if (!config) return;
    const branch = event.params.branch;
    let version: string;
    try {
      version = branch ? await this.installFromSource(config, branch, event) : this.installShippedRuntime().version;
    } catch (error) {
      await event.fail(`update-testflinger failed, ${this.state.runtimeVersion ?? 'the current runtime'} keeps running: ${message(error)}`);
      return;
    }
    this.state.runtimeVersion = version;
    saveHostState(this.paths, this.state);
    const report = await this.reconcileAndRecord(config, { restartAll: true });
    if (!report) {
      await event.fail(`runtime ${version} installed, but restarting agents failed: ${this.state.problem}`);
      return;
    }
    await event.setResults({ version, restarted: report.restarted.join(',') });
  }

  private async installFromSource(config: CharmConfig, branch: string, event: ActionEvent<unknown>): Promise<string> {
    const repo = config['agent-source-repo'];
    if (!repo) throw new Error('agent-source-repo is not set');
    const workDir = fs.mkdtempSync(path.join(this.paths.stateDir, 'build-'));
    try {
      await event.log(`building ${branch} of ${repo.display}`);
      const gitEnv = gitEnvironment(this.paths, repo, { privateKey: config['ssh-private-key'], knownHosts: config['config-repo-known-hosts'] });
      const { bundleDir, commit } = await buildRuntimeFromSource(this.host.run, { url: repo.url, display: repo.display, gitEnv }, branch, workDir);
      return installRuntime(this.paths, bundleDir, `src-${commit.slice(0, 12)}`, this.host.nodePath).version;
    } finally {
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  }

  private async requireConfig(event: ActionEvent<unknown>): Promise<CharmConfig | undefined> {
    const config = await this.configOrError();
    if (!(config instanceof CharmConfigError)) return config;
    await event.fail(`cannot run ${event.name}: ${config.message}`);
    return undefined;
  }

  override async collectUnitStatus(): Promise<StatusBase | undefined> {
    if (this.removing) return undefined;
    const status = await this.statusFromFacts();
    // Long values (a 5,000-character branch, a long reason from git) never reach `juju status` whole.
    const short = elide(status.message, STATUS_MAX);
    return short === status.message ? status : new (status.constructor as new (message: string) => StatusBase)(short);
  }

  private async statusFromFacts(): Promise<StatusBase> {
    const config = await this.configOrError();
    if (config instanceof CharmConfigError) return new BlockedStatus(`${config.message}; host unchanged`);
    if (this.state.problem) return new BlockedStatus(this.state.problem);
    if (this.state.capacityProblem) return new BlockedStatus(this.state.capacityProblem);
    if (this.state.authProblem) return new BlockedStatus(this.state.authProblem);
    const expected = Object.keys(this.state.appliedPrograms).sort();
    const invalid = Object.keys(this.state.invalidAgents);
    if (expected.length === 0) {
      return invalid.length > 0
        ? new BlockedStatus(`no valid agents: ${listNames(invalid)} have a bad testflinger-agent.conf`)
        : new BlockedStatus('no agents found under config-dir');
    }
    return this.statusFromPrograms(expected, invalid);
  }

  /**
   * supervisord's states, after giving agents this hook just started their `startsecs` to become
   * RUNNING (or to fail): the status then says what is true for the next minutes, not a transient.
   */
  private async settledPrograms(expected: readonly string[]): Promise<ProgramStatus[]> {
    const deadline = Date.now() + STARTING_SETTLE_MS;
    let programs = await this.host.supervisor.status();
    const starting = () => programs.some((p) => p.state === 'STARTING' && expected.includes(p.name));
    while (starting() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      programs = await this.host.supervisor.status();
    }
    return programs;
  }

  private async statusFromPrograms(expected: string[], invalid: string[]): Promise<StatusBase> {
    if (!(await this.host.supervisor.isRunning())) return new BlockedStatus('supervisord is not running');
    const byName = new Map<string, ProgramStatus>((await this.settledPrograms(expected)).map((s) => [s.name, s]));
    const state = (name: string) => byName.get(name)?.state ?? 'MISSING';
    const failing = expected.filter((n) => !['RUNNING', 'STARTING'].includes(state(n)));
    const starting = expected.filter((n) => state(n) === 'STARTING');
    const running = expected.length - failing.length - starting.length;
    const badConf = invalid.length > 0 ? `; bad conf: ${listNames(invalid)}` : '';
    if (failing.length > 0) {
      const shown = failing.slice(0, STATUS_NAMES_SHOWN).map((n) => `${n} ${state(n)}`);
      const more = failing.length > STATUS_NAMES_SHOWN ? ` and ${failing.length - STATUS_NAMES_SHOWN} more` : '';
      return new BlockedStatus(`${shown.join(', ')}${more}; ${running} of ${expected.length} agents running${badConf}`);
    }
    if (invalid.length > 0) return new BlockedStatus(`${running} agents running; bad conf: ${listNames(invalid)} (see juju debug-log)`);
    if (starting.length > 0) return new WaitingStatus(`${running} agents running, ${starting.length} starting`);
    if (this.state.pendingRestart.length > 0) return new WaitingStatus(`${running} agents running; restart pending for ${listNames(this.state.pendingRestart)}`);
    const pending = this.state.limitsRestartPending ? '; supervisord restart for new limits waits until no agent runs a job' : '';
    return new ActiveStatus(`${running} agent${running === 1 ? '' : 's'} running${pending}`);
  }
}
