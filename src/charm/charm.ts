/**
 * The Testflinger agent host charm: one handler per event over the Host (host.ts). The state is
 * loaded once when the charm is built and saved once when the event's handler ends; the status
 * is set once from its components: the agents' (unitstatus.ts) and the health loop's
 * (operations/health.ts), the framework taking the most urgent. See docs/architecture.md and docs/security.md.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BlockedStatus, CharmBase, MaintenanceStatus, type ActionEvent, type ActionResults, type CollectStatusEvent, type Framework, type HookEvent, type HookName, type StatusBase } from '../ops';
import { credentialsFromSecret, obtainRefreshToken, tokenIsFresh, writeTokenFile } from './auth';
import { CharmConfigError, parseCharmConfig, type CharmConfig } from './config';
import { cosInputsDigest, cosUnitBag } from './cosprovider';
import { gitEnvironment, reportingFirstSeenKeys } from './gitaccess';
import { hostFromEnv, type Host } from './host';
import { checkHealth, crashLoopStatus, healthNotes, staleNotes, type HealthResult } from './operations/health';
import { changedPids, driftFixState, driftText, findDrift, processIds, restoreRuntimeLink } from './operations/drift';
import { agentLogs, agentStatus, actionParams, charmSecrets, maskCharmSecrets, restartAgents, setOffline, setOnline, type ActionName, type ActionParams, type Operation } from './operations/actions';
import { reconcile, type ReconcileOptions, type ReconcileReport } from './reconcile';
import { currentRuntimeVersion, installRuntime } from './runtime';
import { buildRuntimeFromSource, ensureBuildUser } from './runtimebuild';
import { renderPhaseScripts } from './scripts';
import { loadHostState, saveHostState, type HostState } from './state';
import { PEER_ENDPOINT, PeerPlacement } from './peers';
import { writeProgramFiles } from './programfiles';
import { ensureMqttCredentials, loadMqttState, mqttCredentialsFile, withDefaultTopicPrefix } from './mqtt';
import { charmRevision, clearHostSummary, publishHostSummary } from './mqtthost';
import type { ProgramStatus } from './supervisor';
import { expectedPrograms, lastErrorLine, programsToExplain, STATUS_MAX, statusNeedsPrograms, unitStatus } from './unitstatus';

/** As metadata.yaml names the charm: dashboards and rules are tagged with it. */
const CHARM_NAME = 'testflinger-agent-host';
/** How much of a down agent's log the status reads for its last error: a few lines, never the whole. */
const START_ERROR_TAIL_BYTES = 4096;

/** `secret:ID` and `secret://<model-uuid>/ID` name the same secret: the ID is what counts. */
function sameSecret(a: string, b: string): boolean {
  const idOf = (uri: string) => uri.slice(uri.lastIndexOf('/') + 1).replace(/^secret:/, '');
  return b !== '' && idOf(a) === idOf(b);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * supervisord's programs when this reconcile (re)added every expected one (a fresh unit): each is
 * STARTING, as supervisord made it. Reading them would only wait for supervisord to finish forking
 * them all (a third of a second for 100); update-status reads how they settled. Undefined (read
 * them) when any expected agent was left as it was.
 */
function justStarted(expected: readonly string[], started: readonly string[]): ProgramStatus[] | undefined {
  const startedNow = new Set(started);
  if (expected.length === 0 || !expected.every((n) => startedNow.has(n))) return undefined;
  return expected.map((name) => ({ name, state: 'STARTING', description: 'added by this hook' }));
}

export class AgentHostCharm extends CharmBase {
  private readonly host: Host;
  private state: HostState;
  /** Set by the remove hook: a unit on its way out reports no status. */
  private removing = false;
  /** The config, parsed once per event (handlers, actions and the status all use it). */
  private parsedConfig: Promise<CharmConfig | CharmConfigError> | undefined;
  /** The summary line update-status's health check took ("12 agents: 9 waiting, ..."). */
  private healthSummary: string | undefined;
  /** Agents this event's health check started again after they failed (the status names them). */
  private retried: readonly string[] = [];
  /** supervisord's programs as the last reconcile read them, if nothing was asked of it since. */
  private programsRead: ProgramStatus[] | null | undefined;
  /** The agents' component of the status, worked out once per event (both components need it). */
  private agentsStatusOnce: Promise<StatusBase> | undefined;
  /** Which agents run on this unit among the application's units (peers.ts). */
  private readonly placement: PeerPlacement;

  constructor(framework: Framework, host?: Host) {
    super(framework);
    this.host = host ?? hostFromEnv(process.env, framework.context.charmDir);
    this.state = loadHostState(this.host.paths);
    this.placement = new PeerPlacement({ model: this.model, unitName: framework.context.unitName, host: this.host, log: (m) => this.log.info(m) });
    this.observePeers();
    this.handle('install', () => this.onInstall());
    this.handle('config-changed', () => this.onReconcileHook({}));
    this.handle('upgrade-charm', () => this.onUpgradeCharm());
    this.handle('update-status', () => this.onUpdateStatus());
    this.handle('remove', () => this.onRemove());
    this.observe('secret-changed', (event) => this.savingState(() => this.onSecretChanged(event)));
    // A crash loop is named first among blocked statuses (the first added wins a tie).
    this.observeCollectUnitStatus((event) => this.collectHealthStatus(event));
    this.observeCollectUnitStatus((event) => this.collectAgentsStatus(event));
    this.observeCollectUnitStatus((event) => this.collectMqttStatus(event));
    // A Grafana Agent that joins, or asks again, gets the data at once; broken needs nothing:
    // the agents carry on unobserved.
    for (const kind of ['joined', 'changed'] as const) this.observeRelation('cos-agent', kind, () => this.savingState(() => this.publishCosAgent({ force: true })));
    this.action('update-configs', (event) => this.onUpdateConfigs(event));
    this.action('update-testflinger', (event) => this.onUpdateTestflinger(event));
    this.action('agent-status', (event) => this.operation(event, (op) => agentStatus(op, event.params.agents)));
    this.action('set-offline', (event) => this.operation(event, async (op) => setOffline(op, event.params.agents, event.params.reason, (agent) => this.host.driver.agentOwner(agent))));
    this.action('set-online', (event) => this.operation(event, (op) => setOnline(op, event.params.agents)));
    this.action('restart-agents', (event) => this.onRestartAgents(event));
    this.action('check-drift', (event) => this.onCheckDrift(event));
    this.action('agent-logs', (event) =>
      this.operation(event, async (op, config) => agentLogs(op, event.params.agent, event.params.lines, await charmSecrets(this.host, config, (id) => this.model.getSecret({ id })))),
    );
  }

  /** Peer hooks and leadership may change where agents run: the placement is read afresh. */
  private observePeers(): void {
    const unit = this.framework.context.unitName;
    for (const kind of ['created', 'joined', 'changed', 'departed', 'broken'] as const) {
      this.observeRelation(PEER_ENDPOINT, kind, (event) => {
        this.placement.fresh = true;
        // The leaving unit stops its agents before the others see it go (they start them then).
        if (kind === 'broken' || (kind === 'departed' && event.departingUnit === unit)) this.placement.leaving = true;
        return this.savingState(() => this.onReconcileHook({}));
      });
    }
    this.observe('leader-elected', () => {
      this.placement.fresh = true;
      return this.savingState(() => this.onReconcileHook({}));
    });
  }

  private handle(hook: HookName, handler: () => Promise<void>): void {
    this.observe(hook, () => this.savingState(handler));
  }

  /** An action, with its params checked (actionParams); like a hook, it saves the state it leaves. */
  private action<N extends ActionName>(name: N, handler: (event: ActionEvent<ActionParams<N>>) => Promise<void>): void {
    this.observeAction(name, actionParams[name], (event: ActionEvent<ActionParams<N>>) => this.savingState(() => handler(event)));
  }

  /**
   * Runs the event's handler; the state it leaves is saved once, whether it succeeds or not, and
   * only when it differs from the state loaded (a refused config writes nothing on the host).
   */
  private async savingState(handler: () => Promise<void>): Promise<void> {
    const loaded = JSON.stringify(this.state);
    try {
      await handler();
    } finally {
      if (JSON.stringify(this.state) !== loaded) saveHostState(this.paths, this.state);
    }
  }

  private get paths() {
    return this.host.paths;
  }

  /** The one accessor of the config: parsed on first use, then the same answer all event long. */
  private configOrError(): Promise<CharmConfig | CharmConfigError> {
    const { modelName, unitName } = this.framework.context;
    this.parsedConfig ??= this.model.getConfig().then((raw) => {
      try {
        return withDefaultTopicPrefix(parseCharmConfig(raw), modelName, unitName);
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
    await this.host.driver.installPackages((m) => this.log.info(m));
    this.installShippedRuntime();
    const config = await this.config();
    renderPhaseScripts(this.host.renderer, this.paths, config?.['config-dir'] ?? '');
    // On a unit the supervisor package starts its service at install; the sandbox does the same.
    await this.host.supervisor.ensureRunning(0);
    if (!config) return;
    await this.ensureAgentToken(config, {});
    await this.ensureMqttCredentials(config, false);
    await this.reconcileAndRecord(config, { mayRestartSupervisor: true });
    await this.publishMqttHost(config);
  }

  private installShippedRuntime(): { version: string; changed: boolean } {
    const result = this.installBundles(path.join(this.host.charmDir, 'dist'), 'charm');
    this.state.runtimeVersion = result.version;
    return result;
  }

  private async onUpgradeCharm(): Promise<void> {
    const { version } = this.installShippedRuntime();
    await this.log.info(`agent runtime ${version} installed from the charm`);
    await this.onReconcileHook({ restartAll: true });
  }

  private async onReconcileHook(options: { restartAll?: boolean }): Promise<void> {
    const config = await this.config();
    if (!config) return;
    await this.ensureAgentToken(config, {});
    await this.ensureMqttCredentials(config, false);
    // Program files point at the runtime: make sure it is there even if install never ran here.
    if (currentRuntimeVersion(this.paths) === null) this.installShippedRuntime();
    await this.reconcileAndRecord(config, options);
    await this.publishMqttHost(config);
  }

  /**
   * Runs a reconcile; a failure is recorded (the host keeps its previous state) and shown in
   * the status rather than failing the hook, which Juju would only retry to the same end.
   */
  private async reconcileAndRecord(config: CharmConfig, options: Omit<ReconcileOptions, 'log'>): Promise<ReconcileReport | undefined> {
    try {
      const configDir = config['config-dir'];
      const applied = Object.keys(this.state.appliedPrograms);
      const placement = (revision: string) => this.placement.share(this.state.placement, applied, configDir, revision);
      const { state, report, programs } = await reconcile(this.host, config, this.state, { ...options, placement, log: (m) => this.log.warning(m) });
      // A retry carries out what was pending; it does not clear a failure it did not retry.
      this.state = { ...state, problem: options.mode === 'retry' ? state.problem : null };
      const view = await this.placement.publish(this.state.placement, Object.keys(this.state.appliedPrograms), report.stopping, configDir, report.revision);
      this.state = { ...this.state, placement: view };
      this.programsRead = programs ?? justStarted(expectedPrograms(this.state), [...report.added, ...report.forced]);
      // One log line when something happened; a quiet run costs no extra hook-tool call.
      if (report.added.length + report.removed.length + report.changed.length + report.restarted.length > 0) {
        await this.log.info(`agents: ${report.agents.length}; added [${report.added}] removed [${report.removed}] changed [${report.changed}] restarting [${report.restarted}]`);
      }
      await this.publishCosAgent({ force: false });
      return report;
    } catch (error) {
      this.state = { ...this.state, problem: message(error) };
      await this.log.error(`reconcile failed, previous state kept: ${this.state.problem}`);
      return undefined;
    }
  }

  /**
   * Writes this unit's cos-agent data (one scrape target per agent, dashboards, rules) to every
   * cos-agent relation. Unless forced, only when the agents or their ports changed since the
   * last publication, so a quiet hook does not even list the relations.
   */
  private async publishCosAgent(options: { force: boolean }): Promise<void> {
    const digest = cosInputsDigest(this.state, this.host.charmDir);
    if (!options.force && digest === this.state.cosPublished) return;
    const relations = await this.model.relations('cos-agent');
    const config = await this.config();
    if (relations.length === 0 || !config) return;
    const { context } = this.framework;
    const bag = cosUnitBag({
      host: this.host,
      configDir: config['config-dir'],
      state: this.state,
      charmDir: this.host.charmDir,
      unitName: context.unitName,
      topology: { model: context.modelName, modelUuid: context.modelUuid, application: context.appName, charmName: CHARM_NAME },
    });
    for (const relation of relations) await relation.data.localUnit.update(bag);
    this.state = { ...this.state, cosPublished: digest };
  }

  /** The unit is going away: its agents stop and their program files go (configs and runtime stay). */
  private async onRemove(): Promise<void> {
    const removed = writeProgramFiles(this.paths, new Map()).removed;
    // update() stops the removed programs all at once, then drops their groups.
    if (removed.length > 0 && (await this.host.supervisor.isRunning())) await this.host.supervisor.update();
    this.state = { ...this.state, appliedPrograms: {}, appliedAgents: {}, appliedInputs: '' };
    await this.log.info(`removed the programs of ${removed.length} agents`);
    await this.clearMqttHost();
    this.removing = true;
  }

  /** A removed unit takes its retained `<prefix>/host` summary with it; a broker that is down is only logged. */
  private async clearMqttHost(): Promise<void> {
    const config = await this.config();
    if (!config?.['mqtt-broker']) return;
    const problem = await clearHostSummary(config['mqtt-broker'], config['mqtt-topic-prefix'], mqttCredentialsFile(this.paths));
    if (problem) await this.log.warning(problem);
  }

  /** The credentials were rotated: fetch their new revision and a new token. Other secrets are not ours. */
  private async onSecretChanged(event: HookEvent): Promise<void> {
    const config = await this.config();
    if (!config) return;
    if (event.secret && config['mqtt-broker'] && sameSecret(event.secret.id, config['mqtt-credentials-secret'])) {
      await this.ensureMqttCredentials(config, true);
      return;
    }
    if (event.secret && !sameSecret(event.secret.id, config['credentials-secret'])) {
      await this.log.debug(`secret-changed for ${event.secret.id}, not credentials-secret: nothing to do`);
      return;
    }
    await this.ensureAgentToken(config, { force: true });
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
      // Root's alone (0600) on a unit: each agent reads it through a descriptor its wrapper opens.
      writeTokenFile(this.paths.tokenFile, token, now, await this.host.driver.tokenOwner());
      this.state.tokenSource = source;
      this.state.authProblem = null;
      await this.log.info(`agent refresh token obtained from ${config['testflinger-server']}`);
    } catch (error) {
      this.state.authProblem = `credentials-secret: ${message(error)}`;
      await this.log.error(this.state.authProblem);
    }
  }

  /** Renews the token when due, and carries out what an earlier hook left pending. */
  private async onUpdateStatus(): Promise<void> {
    const config = await this.config();
    if (!config) return;
    await this.ensureAgentToken(config, {});
    // An agent moved to another unit stops here once its job is done: update-status looks again.
    const stopping = (this.state.placement?.stopping.length ?? 0) > 0;
    if (this.state.pendingRestart.length > 0 || this.state.limitsRestartPending || stopping) await this.reconcileAndRecord(config, { mode: 'retry' });
    await this.checkAgentHealth(config);
    await this.publishMqttHost(config);
  }

  /** The MQTT credentials file the agents read (mqtt.ts); a failure blocks, naming the option. */
  private async ensureMqttCredentials(config: CharmConfig, force: boolean): Promise<void> {
    const getSecret = (id: string, refresh: boolean) => this.model.getSecret({ id }, { refresh });
    const problem = await ensureMqttCredentials(config, { paths: this.paths, getSecret, owner: await this.host.driver.tokenOwner() }, force);
    if (problem) await this.log.error(problem);
  }

  /** The unit's summary on `<prefix>/host`, when MQTT is on (mqtthost.ts); never fails the hook. */
  private async publishMqttHost(config: CharmConfig): Promise<void> {
    if (!config['mqtt-broker']) return;
    const programs = this.programsRead ?? (await this.host.supervisor.readPrograms());
    const problem = await publishHostSummary(config['mqtt-broker'], config['mqtt-topic-prefix'], mqttCredentialsFile(this.paths), {
      unit: this.framework.context.unitName,
      agents: Object.fromEntries(expectedPrograms(this.state).map((name) => [name, programs?.find((p) => p.name === name)?.state ?? 'UNKNOWN'])),
      invalid: Object.keys(this.state.invalidAgents),
      summary: this.healthSummary ?? null,
      charm_revision: charmRevision(this.host.charmDir),
      runtime_version: this.state.runtimeVersion,
      config_revision: this.state.configRevision,
      updated_at: new Date().toISOString(),
    });
    if (problem) await this.log.warning(problem);
  }

  /** Starts agents supervisord gave up on (with a backoff) and notes stale ones: operations/health.ts. */
  private async checkAgentHealth(config: CharmConfig): Promise<void> {
    let result: HealthResult | undefined;
    try {
      result = await checkHealth({ host: this.host, state: this.state, configDir: config['config-dir'] }, Date.now());
    } catch (error) {
      await this.log.warning(`health check failed: ${message(error)}`);
      return;
    }
    if (!result) return;
    const { health, staleAgents, restartRequests, restarted, refused, summary } = result;
    this.state = { ...this.state, health, staleAgents, restartRequests };
    this.healthSummary = summary;
    this.retried = restarted;
    if (restarted.length + Object.keys(refused).length === 0) return;
    // supervisord was asked something: the status reads its programs afresh.
    this.programsRead = undefined;
    await this.log.warning(`health: started ${restarted.join(', ') || 'none'}${Object.keys(refused).length > 0 ? `; refused: ${JSON.stringify(refused)}` : ''}`);
  }

  private async onUpdateConfigs(event: ActionEvent<ActionParams<'update-configs'>>): Promise<void> {
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

  private async onUpdateTestflinger(event: ActionEvent<ActionParams<'update-testflinger'>>): Promise<void> {
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
    const report = await this.reconcileAndRecord(config, { restartAll: true });
    if (!report) {
      await event.fail(`runtime ${version} installed, but restarting agents failed: ${this.state.problem}`);
      return;
    }
    await event.setResults({ version, restarted: report.restarted.join(',') });
  }

  /** A unit's runtime carries its own copy of node (it outlives the charm dir's); a sandbox's runs ours. */
  private installBundles(bundleDir: string, label: string): { version: string; changed: boolean } {
    return installRuntime(this.paths, bundleDir, label, this.host.nodePath, { copyNode: this.host.driver.kind === 'unit' });
  }

  private async installFromSource(config: CharmConfig, branch: string, event: ActionEvent<unknown>): Promise<string> {
    const repo = config['agent-source-repo'];
    if (!repo) throw new Error('agent-source-repo is not set');
    const workDir = fs.mkdtempSync(path.join(this.paths.stateDir, 'build-'));
    try {
      await event.log(`building ${branch} of ${repo.display}`);
      const gitEnv = gitEnvironment(this.paths, repo, { privateKey: config['ssh-private-key'], knownHosts: config['config-repo-known-hosts'] });
      // On a unit the branch's code runs as the build user, never as root (runtimebuild.ts).
      const builder = this.host.driver.kind === 'unit' ? await ensureBuildUser(this.host.run, path.join(this.paths.root, 'etc/passwd')) : undefined;
      const { bundleDir, commit } = await reportingFirstSeenKeys(this.paths, (m) => this.log.warning(m), () => buildRuntimeFromSource(this.host.run, { url: repo.url, display: repo.display, gitEnv }, branch, workDir, { builder }));
      return this.installBundles(bundleDir, `src-${commit.slice(0, 12)}`).version;
    } finally {
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  }

  /**
   * Runs an operator action on agents: needs a valid config (the agents' dir), sets its
   * results, and fails the action with the reason when it cannot be done.
   */
  private async operation(event: ActionEvent<unknown>, work: (op: Operation, config: CharmConfig) => Promise<ActionResults>): Promise<void> {
    const config = await this.requireConfig(event);
    if (!config) return;
    try {
      await event.setResults(await work({ host: this.host, state: this.state, configDir: config['config-dir'] }, config));
    } catch (error) {
      await event.fail(`${event.name}: ${message(error)}`);
    }
  }

  private async onRestartAgents(event: ActionEvent<ActionParams<'restart-agents'>>): Promise<void> {
    const { agents, mode, force } = event.params;
    await this.operation(event, async (op) => {
      const outcome = await restartAgents(op, agents, mode, force, new Date());
      this.state = { ...this.state, restartRequests: { ...this.state.restartRequests, ...outcome.recorded } };
      return outcome.results;
    });
  }

  /** Lists the managed files that drifted; with fix, restores them through the normal reconcile. */
  private async onCheckDrift(event: ActionEvent<ActionParams<'check-drift'>>): Promise<void> {
    const config = await this.requireConfig(event);
    if (!config) return;
    const drift = findDrift(this.host, config, this.state);
    if (!event.params.fix || drift.length === 0) {
      await event.setResults({ count: String(drift.length), drift: driftText(drift) });
      return;
    }
    const pidsBefore = await processIds(this.host);
    restoreRuntimeLink(this.paths, this.state.runtimeVersion);
    this.state = driftFixState(this.state, drift);
    const report = await this.reconcileAndRecord(config, {});
    if (!report) {
      await event.fail(`check-drift: restoring failed: ${this.state.problem}`);
      return;
    }
    const remaining = findDrift(this.host, config, this.state);
    await event.setResults({
      count: String(drift.length),
      drift: driftText(drift),
      remaining: driftText(remaining),
      // Only an agent whose edited file supervisord had already read restarts, as its file changes.
      'restarted-now': changedPids(pidsBefore, await processIds(this.host)).join(',') || 'none',
      'asked-to-restart': report.restarted.join(',') || 'none',
    });
  }

  private async requireConfig(event: ActionEvent<unknown>): Promise<CharmConfig | undefined> {
    const config = await this.configOrError();
    if (!(config instanceof CharmConfigError)) return config;
    await event.fail(`cannot run ${event.name}: ${config.message}`);
    return undefined;
  }

  /** The agents' component: what the config, the state and supervisord's programs call for. */
  private async collectAgentsStatus(event: CollectStatusEvent): Promise<void> {
    if (!this.removing) event.addStatus(await this.agentsStatus());
  }

  /** MQTT's component: credentials the charm could not read block, naming mqtt-credentials-secret. */
  private async collectMqttStatus(event: CollectStatusEvent): Promise<void> {
    const config = await this.config();
    if (this.removing || !config?.['mqtt-broker']) return;
    const { problem } = loadMqttState(this.paths);
    if (problem) event.addStatus(new BlockedStatus(problem));
  }

  /** The health loop's component: a crash loop blocks (operations/health.ts). */
  private async collectHealthStatus(event: CollectStatusEvent): Promise<void> {
    if (this.removing) return;
    const crashLoop = crashLoopStatus(this.state, await this.agentsStatus(), Date.now());
    if (crashLoop) event.addStatus(crashLoop);
  }

  private agentsStatus(): Promise<StatusBase> {
    this.agentsStatusOnce ??= this.readAgentsStatus();
    return this.agentsStatusOnce;
  }

  private async readAgentsStatus(): Promise<StatusBase> {
    const config = await this.configOrError();
    // Read once, never waited on: agents this hook started show as starting (waiting), and the
    // next event (update-status) shows how they settled.
    const programs = statusNeedsPrograms(config, this.state) ? (this.programsRead !== undefined ? this.programsRead : await this.host.supervisor.readPrograms()) : null;
    const now = Date.now();
    const startErrors = programs && !(config instanceof CharmConfigError) ? await this.startErrors(config, programsToExplain(expectedPrograms(this.state), programs, this.retried)) : undefined;
    // The health notes said around the message (a crash loop before it): the quoted errors leave them room.
    const notes = healthNotes(this.state, now).join('; ');
    const why = { ...(startErrors ? { startErrors } : {}), retried: this.retried, room: STATUS_MAX - (notes ? notes.length + 2 : 0) };
    return unitStatus(config, this.state, programs, why, { summary: this.healthSummary, notes: staleNotes(this.state) });
  }

  /**
   * The named agents' own last errors, from the tail of the log supervisord keeps of each (one
   * bounded read per agent, only for agents that failed). The charm's secrets are masked first;
   * an agent whose log cannot be read is named without one.
   */
  private async startErrors(config: CharmConfig, names: readonly string[]): Promise<Map<string, string>> {
    const errors = new Map<string, string>();
    if (names.length === 0) return errors;
    // The key and the token file only: reading the credentials secret would cost a hook-tool call.
    const secrets = await charmSecrets(this.host, config, async () => ({}));
    const control = this.host.supervisor;
    await Promise.all(
      names.map(async (name) => {
        const tail = await control.tailLog(name, START_ERROR_TAIL_BYTES).catch(() => undefined);
        const line = tail && lastErrorLine(maskCharmSecrets(tail.text, secrets), tail.cut);
        if (line) errors.set(name, line);
      }),
    );
    return errors;
  }
}
