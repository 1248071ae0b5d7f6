/**
 * Brings the host in line with the charm config and the config repo, in three steps: gather the
 * inputs (the checkout, the agents, their rendered program files, supervisord's facts), `plan`
 * (plan.ts, pure), and apply the plan (SSH files, phase scripts, program files, supervisord,
 * signals). When nothing the host derives from changed since the last apply, the desired agents
 * come from the state: no conf is parsed and nothing is rendered. See docs/architecture.md.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../agent/config';
import { SERVER_ENV } from '../common/contract';
import { sha256 } from '../common/fsutil';
import { agentBusy, agentConfPath, agentsRootOf, discoverAgents, readAgentConf, type AgentDir, type InvalidAgentDir, type KnownAgent } from './agents';
import { agentBasedirs, type AgentBasedirs } from './basedirs';
import type { CharmConfig } from './config';
import { syncConfigRepo } from './configrepo';
import { readIfExists } from './driver';
import { gitEnvironment, reportingFirstSeenKeys } from './gitaccess';
import { CONTAINED_WRAPPER } from './isolation';
import type { Host } from './host';
import { plan, type DesiredAgent, type Plan } from './plan';
import { mqttAgentEnv, mqttCredentialsOption } from './mqtt';
import { assignMetricsPorts } from './ports';
import { currentRuntimeVersion } from './runtime';
import { PHASE_SCRIPT_TEMPLATE, phaseScripts, writePhaseScripts } from './scripts';
import type { HostState } from './state';
import { PROGRAM_TEMPLATE, renderProgramFile, writeProgramFiles } from './programfiles';
import type { ProgramStatus } from './supervisor';
import { quoted } from './values';

export interface ReconcileReport {
  agents: string[];
  added: string[];
  removed: string[];
  /** Agents whose directory or program file changed. */
  changed: string[];
  /** Agents asked (USR1) to restart once idle. */
  restarted: string[];
  /** Agents whose program file changed, so supervisord restarted them at once. */
  forced: string[];
  invalid: Record<string, string>;
  revision: string;
  /** Agents no longer placed on this unit, kept until their job ends. */
  stopping: string[];
}

/**
 * The agents this unit may run (placement.ts, peers.ts), for the repo revision being applied.
 * Any other agent it runs stops once it has no job; with `stopNow` (the unit is leaving), at once.
 */
export interface AgentShare {
  /** `every`: the unit is alone, every agent of the repo runs here (bad ones reported here). */
  readonly run: ReadonlySet<string> | 'every';
  readonly stopNow: boolean;
}

export interface ReconcileOptions {
  /**
   * `pull` (config-changed, actions): sync the repo and derive the agents from it. `retry`
   * (update-status): the agents as last applied; only what is pending (signals, a limits
   * restart) is carried out.
   */
  mode?: 'pull' | 'retry';
  /** Ask every agent to restart when idle (upgrade-charm, update-testflinger). */
  restartAll?: boolean;
  /** supervisord may be restarted even if agents are busy (install: nothing runs yet). */
  mayRestartSupervisor?: boolean;
  log?: (message: string) => Promise<void>;
  /** Which agents run on this unit; absent: every agent of the repo. */
  placement?: (revision: string) => Promise<AgentShare>;
}

export interface ReconcileResult {
  state: HostState;
  report: ReconcileReport;
  /** supervisord's programs as read before applying, when nothing was asked of it since. */
  programs: ProgramStatus[] | null | undefined;
}

/** What the desired agents are, with what applying them needs beyond the plan. */
interface Desired {
  agents: DesiredAgent[];
  invalid: Record<string, string>;
  ports: Record<string, number>;
  sharedHash: string;
  /** The valid agents' basedirs, to make before they start; absent from the state (made when last applied). */
  basedirs?: AgentBasedirs[];
  /** Rendered program files and phase scripts; absent when they are as last applied. */
  files?: { programs: Map<string, string>; scripts: Map<string, string> };
}

function knownAgents(state: HostState): Record<string, KnownAgent> {
  const known: Record<string, KnownAgent> = {};
  for (const [name, hash] of Object.entries(state.appliedAgents)) {
    const agentId = state.agentIds[name];
    if (agentId !== undefined) known[name] = { hash, agentId };
  }
  return known;
}

/** The agents as last applied: nothing read but the state. */
function desiredFromState(state: HostState): Desired {
  const agents = Object.keys(state.appliedPrograms)
    .filter((name) => state.invalidAgents[name] === undefined)
    .map((name) => ({ name, contentHash: state.appliedAgents[name] ?? '', agentId: state.agentIds[name] ?? '', programHash: state.appliedPrograms[name] as string }));
  return { agents, invalid: state.invalidAgents, ports: state.ports, sharedHash: state.appliedShared };
}

/**
 * What every agent shares; when it changes, every agent restarts (safely). The SSH part comes
 * from the config, not from ~ubuntu/.ssh, which the agent user may change.
 */
function sharedInputsHash(host: Host, config: CharmConfig, scripts: ReadonlyMap<string, string>): string {
  const scriptTexts = [...scripts.keys()].sort().map((name) => scripts.get(name) as string);
  return sha256(currentRuntimeVersion(host.paths) ?? '', ...scriptTexts, config['ssh-private-key'], config['ssh-public-key'], config['ssh-config'], config['testflinger-server']);
}

/** Everything the rendered host derives from; the same hash means the same files and agents. */
function inputsHash(host: Host, config: CharmConfig, revision: string): string {
  const templates = [PROGRAM_TEMPLATE, PHASE_SCRIPT_TEMPLATE, CONTAINED_WRAPPER].map((t) => readIfExists(path.join(host.charmDir, t)));
  return sha256(JSON.stringify(config), revision, currentRuntimeVersion(host.paths) ?? '', host.driver.kind, host.paths.root, ...templates);
}

/** Discovers the agents in the checkout and renders their program files and the phase scripts. */
async function desiredFromRepo(host: Host, config: CharmConfig, state: HostState, log: (m: string) => Promise<void>): Promise<Desired> {
  const found = discoverAgents(agentsRootOf(host, config['config-dir']), knownAgents(state), (name) => host.driver.agentStateDir(name));
  const invalid = found.invalid.slice();
  const { discovered, basedirs } = await withOwnBasedirs(host, found.agents, invalid);
  const wasApplied = (name: string) => state.appliedPrograms[name] !== undefined;
  const names = [...discovered.map((a) => a.name), ...invalid.map((i) => i.name).filter(wasApplied)].sort();
  const ports = await assignMetricsPorts(state.ports, names, host.isPortFree);
  // One agent that cannot be rendered is skipped like a bad conf; the others go on.
  const programs = new Map<string, string>();
  const agents: DesiredAgent[] = [];
  for (const agent of discovered) {
    try {
      const content = renderAgentProgram(host, config, agent.name, ports[agent.name] as number);
      programs.set(agent.name, content);
      agents.push({ name: agent.name, contentHash: agent.contentHash, agentId: agent.agentId, programHash: sha256(content) });
    } catch (error) {
      invalid.push({ name: agent.name, reason: `cannot render its program file: ${(error as Error).message}` });
    }
  }
  for (const bad of invalid) await log(`skipping agent ${quoted(bad.name)}: ${quoted(bad.reason, 300)}`);
  const scripts = phaseScripts(host.renderer, host.paths, config['config-dir']);
  return {
    agents,
    invalid: Object.fromEntries(invalid.map((i) => [i.name, i.reason])),
    ports,
    sharedHash: sharedInputsHash(host, config, scripts),
    basedirs: basedirs.filter((b) => agents.some((a) => a.name === b.agent)),
    files: { programs, scripts },
  };
}

/**
 * The agents whose own basedirs the driver accepts, with those basedirs; the others join
 * `invalid` with the driver's reason (where agents share one user, none is refused).
 */
async function withOwnBasedirs(host: Host, agents: readonly AgentDir[], invalid: InvalidAgentDir[]): Promise<{ discovered: AgentDir[]; basedirs: AgentBasedirs[] }> {
  const basedirs: AgentBasedirs[] = [];
  const refused = new Map<string, string>();
  for (const agent of agents) {
    const stateDir = host.driver.agentStateDir(agent.name);
    if (stateDir === undefined) continue;
    try {
      basedirs.push(agentBasedirs(agent.name, readAgentConf(agent.confPath, stateDir), stateDir));
    } catch (error) {
      // Unchanged since it was last valid, but read now (by a newer charm): a bad conf like any other.
      refused.set(agent.name, error instanceof ConfigError ? error.message : `unreadable: ${(error as Error).message}`);
    }
  }
  for (const [name, reason] of await host.driver.refusedBasedirs(basedirs)) refused.set(name, reason);
  for (const [name, reason] of refused) invalid.push({ name, reason });
  invalid.sort((a, b) => (a.name < b.name ? -1 : 1));
  return { discovered: agents.filter((a) => !refused.has(a.name)), basedirs: basedirs.filter((b) => !refused.has(b.agent)) };
}

/** Every agent named has its program file (a file deleted by hand makes the next hook render). */
function programFilesPresent(host: Host, names: readonly string[]): boolean {
  if (names.length === 0) return true;
  const present = new Set(fs.existsSync(host.paths.programDir) ? fs.readdirSync(host.paths.programDir) : []);
  return names.every((name) => present.has(`${name}.conf`));
}

/**
 * The agents this event should run, with the repo revision and the inputs hash they derive
 * from. A retry takes them from the state; a pull syncs the repo and derives them from it, or,
 * when its inputs hash is the one last applied, takes them from the state too.
 */
async function gather(host: Host, config: CharmConfig, previous: HostState, options: ReconcileOptions, log: (m: string) => Promise<void>): Promise<{ desired: Desired; revision: string; inputs: string; share: AgentShare | undefined }> {
  if (options.mode === 'retry') {
    const share = await options.placement?.(previous.configRevision ?? '');
    return { desired: desiredFromState(previous), revision: previous.configRevision ?? '', inputs: previous.appliedInputs, share };
  }
  const { paths } = host;
  await host.driver.prepareHost(config);
  const remote = config['config-repo'];
  const gitEnv = gitEnvironment(paths, remote, { privateKey: config['ssh-private-key'], knownHosts: config['config-repo-known-hosts'] });
  const { revision } = await reportingFirstSeenKeys(paths, log, () => syncConfigRepo(paths.configsDir, { remote, branch: config['config-branch'], requiredDir: config['config-dir'] }, gitEnv));
  const share = await options.placement?.(revision);
  // Agents newly placed here are rendered: what is placed is part of what the host derives from.
  const inputs = share && share.run !== 'every' ? sha256(inputsHash(host, config, revision), ...[...share.run].sort()) : inputsHash(host, config, revision);
  const unchanged = !options.restartAll && previous.problem === null && inputs === previous.appliedInputs && programFilesPresent(host, Object.keys(previous.appliedPrograms));
  const desired = unchanged ? desiredFromState(previous) : await desiredFromRepo(host, config, previous, log);
  return { desired, revision, inputs, share };
}

/**
 * The desired agents this unit runs: those placed here, and those no longer placed here that
 * are running a job (they stop once it ends; the next hook, update-status included, looks again).
 * Without a share, every agent.
 */
function placedHere(desired: Desired, share: AgentShare | undefined, previous: HostState, isBusy: (name: string) => boolean): { desired: Desired; stopping: string[] } {
  if (!share || share.run === 'every') return { desired, stopping: [] };
  const run = share.run;
  const stopping = share.stopNow ? [] : desired.agents.filter((a) => !run.has(a.name) && previous.appliedPrograms[a.name] !== undefined && isBusy(a.name)).map((a) => a.name);
  const keep = (name: string) => run.has(name) || stopping.includes(name);
  const files = desired.files && { scripts: desired.files.scripts, programs: new Map([...desired.files.programs].filter(([name]) => keep(name))) };
  return {
    stopping,
    desired: {
      ...desired,
      agents: desired.agents.filter((a) => keep(a.name)),
      invalid: Object.fromEntries(Object.entries(desired.invalid).filter(([name]) => run.has(name))),
      ...(desired.basedirs ? { basedirs: desired.basedirs.filter((b) => keep(b.agent)) } : {}),
      ...(files ? { files } : {}),
    },
  };
}

export async function reconcile(host: Host, config: CharmConfig, previous: HostState, options: ReconcileOptions = {}): Promise<ReconcileResult> {
  const log = options.log ?? (async () => undefined);
  const gathered = await gather(host, config, previous, options, log);
  const { revision, inputs } = gathered;
  const isBusy = (name: string) => agentBusy(host, config['config-dir'], name);
  const { desired, stopping } = placedHere(gathered.desired, gathered.share, previous, isBusy);
  const programs = await host.supervisor.readPrograms();
  const decided = plan({
    previous,
    agents: desired.agents,
    invalid: desired.invalid,
    ports: desired.ports,
    sharedHash: desired.sharedHash,
    supervisord: { running: programs !== null, limitsCurrent: (count) => host.driver.supervisord.limitsCurrent(count), delegationCurrent: host.driver.supervisord.delegationCurrent() },
    users: host.driver.hostUsers(),
    isBusy,
    capacity: host.capacity(),
    restartAll: !!options.restartAll,
    mayRestartSupervisor: !!options.mayRestartSupervisor,
  });
  const checkSandbox = config['test-sandbox'] && (desired.files !== undefined || previous.sandboxProblem !== null);
  const applied = await apply(host, decided, desired, { config, prepareAgents: options.mode !== 'retry', checkSandbox, basedirs: desired.basedirs, log });
  const state: HostState = { ...applied.state, configRevision: options.mode === 'retry' ? previous.configRevision : revision, appliedInputs: inputs };
  return {
    state,
    programs: applied.touchedSupervisord ? undefined : programs,
    report: {
      agents: [...decided.agents],
      added: [...decided.added],
      removed: [...decided.removed],
      changed: [...new Set([...decided.contentChanged, ...decided.forced])].sort(),
      restarted: applied.signalled.sort(),
      forced: [...decided.forced],
      invalid: state.invalidAgents,
      revision,
      stopping,
    },
  };
}

interface ApplyOptions {
  config: CharmConfig;
  /** Make the agents' users and files (every pull; a retry only carries out what is pending). */
  prepareAgents: boolean;
  checkSandbox: boolean;
  basedirs: readonly AgentBasedirs[] | undefined;
  log: (m: string) => Promise<void>;
}

/**
 * The agents' users, files and sandbox, before any program file names them; the sandbox's
 * problem as the state keeps it (unchanged when not checked, none when the sandbox is off).
 */
async function prepareAgents(host: Host, decided: Plan, options: ApplyOptions, previous: string | null): Promise<string | null> {
  if (!options.prepareAgents) return previous;
  const check = await host.driver.prepareAgents(options.config, { agents: decided.agents, users: decided.users, checkSandbox: options.checkSandbox, basedirs: options.basedirs, log: options.log });
  if (!options.config['test-sandbox']) return null;
  return check.checked ? check.problem : previous;
}

/** Carries out a plan; returns the state once done and whether supervisord was asked anything. */
async function apply(host: Host, decided: Plan, desired: Desired, options: ApplyOptions): Promise<{ state: HostState; signalled: string[]; touchedSupervisord: boolean }> {
  const { log } = options;
  const sandboxProblem = await prepareAgents(host, decided, options, decided.next.sandboxProblem);
  let strayRemoved = false;
  if (desired.files) {
    writePhaseScripts(host.paths, desired.files.scripts);
    // A kept bad agent keeps the file it has.
    const { removed } = writeProgramFiles(host.paths, desired.files.programs, new Set(decided.keptBad));
    strayRemoved = removed.some((name) => !decided.removed.includes(name));
  } else if (decided.removed.length > 0) {
    // Nothing rendered (a retry, or agents placed on another unit): only the leavers' files go.
    writeProgramFiles(host.paths, new Map(), new Set(decided.agents));
  }
  const reloaded = await applySupervisordStep(host, decided, strayRemoved, log);
  const state = { ...decided.next, sandboxProblem };
  const signalled = await askToRestart(host, decided.toSignal, log);
  if (signalled) state.pendingRestart = [];
  return { state, signalled: signalled ?? [], touchedSupervisord: reloaded || decided.toSignal.length > 0 };
}

/** Starts, restarts or updates supervisord as planned; true when it was asked to do anything. */
async function applySupervisordStep(host: Host, decided: Plan, strayRemoved: boolean, log: (m: string) => Promise<void>): Promise<boolean> {
  const { supervisor } = host;
  const count = decided.agents.length;
  const step = decided.supervisord;
  const daemon = host.driver.supervisord;
  if (step.kind === 'start') {
    await daemon.writeDelegation();
    await supervisor.ensureRunning(count);
    return true;
  }
  if (step.kind === 'restart') {
    supervisor.writeLimits(count);
    const delegation = (await daemon.writeDelegation()) ? 'cgroup delegation and ' : '';
    await log(`restarting supervisord for ${delegation}the limits of ${count} agents (no agent is running a job)`);
    await supervisor.restart();
    return true;
  }
  if (step.writeLimits) supervisor.writeLimits(count);
  if (step.writeDelegation) await daemon.writeDelegation();
  if (decided.limitsWaitFor.length > 0) await log(`supervisord restart for new limits waits for ${decided.limitsWaitFor.join(', ')} to finish a job`);
  // A managed file the state did not know of was removed: supervisord must drop it too.
  if (!decided.update && !strayRemoved) return false;
  await supervisor.update();
  return true;
}

/** Sends USR1; the agents signalled, or undefined when supervisord could not be asked. */
async function askToRestart(host: Host, names: readonly string[], log: (m: string) => Promise<void>): Promise<string[] | undefined> {
  if (names.length === 0) return [];
  try {
    return (await host.supervisor.signal(names, 'USR1')).signalled;
  } catch (error) {
    // Remembered until delivered: the next hook (update-status too) tries again.
    await log(`could not ask ${names.join(', ')} to restart; will retry: ${(error as Error).message}`);
    return undefined;
  }
}

/** The program file the charm writes for this agent now (reconcile, and check-drift to compare). */
export function renderAgentProgram(host: Host, config: CharmConfig, name: string, port: number): string {
  const extraEnv: Record<string, string> = { ...mqttAgentEnv(config) };
  if (config['testflinger-server']) extraEnv[SERVER_ENV] = config['testflinger-server'];
  const mqttCredentialsFile = mqttCredentialsOption(config, host.paths);
  // The link path, not the checkout it points at, so the file survives a config-repo update.
  const agentsRoot = agentsRootOf(host, config['config-dir']);
  return renderProgramFile(
    host.renderer,
    host.paths,
    { name, confPath: agentConfPath(agentsRoot, name), agentDir: path.join(agentsRoot, name), metricsPort: port, extraEnv, ...(mqttCredentialsFile ? { mqttCredentialsFile } : {}) },
    host.driver.agentRun(name, config),
  );
}
