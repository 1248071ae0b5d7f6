/**
 * Brings the host in line with the charm config and the config repo: SSH files, the checkout,
 * phase scripts, one program file per agent, `supervisorctl update` only when a program file
 * changed, and USR1 only to the agents whose inputs changed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256 } from '../common/fsutil';
import { discoverAgents, type AgentDir, type KnownAgent } from './agents';
import type { CharmConfig } from './config';
import { syncConfigRepo } from './configrepo';
import { gitEnvironment } from './gitaccess';
import type { Host } from './host';
import { capacityProblem } from './limits';
import { ensureUbuntuUser } from './packages';
import { assignMetricsPorts } from './ports';
import { currentRuntimeVersion } from './runtime';
import { renderPhaseScripts } from './scripts';
import { writeSshFiles } from './ssh';
import type { HostState } from './state';
import { renderProgramFile, writeProgramFiles } from './supervisor';
import { quoted } from './values';

export interface ReconcileReport {
  agents: string[];
  added: string[];
  removed: string[];
  /** Agents whose directory or program file changed. */
  changed: string[];
  /** Agents asked (USR1) to restart once idle. */
  restarted: string[];
  /** Agents whose program file changed, so `supervisorctl update` restarted them at once. */
  forced: string[];
  invalid: Record<string, string>;
  revision: string;
}

export interface ReconcileOptions {
  /** Ask every agent to restart when idle (upgrade-charm, update-testflinger). */
  restartAll?: boolean;
  /** supervisord may be restarted even if agents are busy (install: nothing runs yet). */
  mayRestartSupervisor?: boolean;
  log?: (message: string) => Promise<void>;
}

function readIfExists(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * What every agent shares; when it changes, every agent restarts (safely). The SSH part comes
 * from the config, not from ~ubuntu/.ssh, which the agent user may change.
 */
function sharedInputsHash(host: Host, config: CharmConfig): string {
  const { paths } = host;
  const scripts = fs.existsSync(paths.binDir)
    ? fs.readdirSync(paths.binDir).filter((f) => f.startsWith('tf-')).sort().map((f) => readIfExists(path.join(paths.binDir, f)))
    : [];
  return sha256(
    currentRuntimeVersion(paths) ?? '',
    ...scripts,
    config['ssh-private-key'],
    config['ssh-public-key'],
    config['ssh-config'],
    config['testflinger-server'],
  );
}

function knownAgents(state: HostState): Record<string, KnownAgent> {
  const known: Record<string, KnownAgent> = {};
  for (const [name, hash] of Object.entries(state.appliedAgents)) {
    const agentId = state.agentIds[name];
    if (agentId !== undefined) known[name] = { hash, agentId };
  }
  return known;
}

export async function reconcile(host: Host, config: CharmConfig, state: HostState, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const { paths, supervisor } = host;
  const log = options.log ?? (async () => undefined);
  const owner = paths.sandbox ? undefined : await ensureUbuntuUser(host.run);
  writeSshFiles(paths, config, owner);

  const remote = config['config-repo'];
  const gitEnv = gitEnvironment(paths, remote, { privateKey: config['ssh-private-key'], knownHosts: config['config-repo-known-hosts'] });
  const sync = await syncConfigRepo(paths.configsDir, { remote, branch: config['config-branch'], requiredDir: config['config-dir'] }, gitEnv);
  state.configRevision = sync.revision;
  const agentsRoot = path.join(paths.configsDir, config['config-dir']);
  const discovered = discoverAgents(agentsRoot, knownAgents(state));
  const invalid = discovered.invalid;
  const wasApplied = (name: string) => state.appliedPrograms[name] !== undefined;
  state.ports = await assignMetricsPorts(state.ports, [...discovered.agents.map((a) => a.name), ...invalid.map((i) => i.name).filter(wasApplied)].sort(), host.isPortFree);
  // One agent that cannot be rendered is skipped like a bad conf; the others go on.
  const programs = new Map<string, string>();
  const agents: AgentDir[] = [];
  for (const agent of discovered.agents) {
    try {
      programs.set(agent.name, renderProgram(host, config, agent, state.ports[agent.name] as number));
      agents.push(agent);
    } catch (error) {
      invalid.push({ name: agent.name, reason: `cannot render its program file: ${(error as Error).message}` });
    }
  }
  state.invalidAgents = Object.fromEntries(invalid.map((i) => [i.name, i.reason]));
  for (const bad of invalid) await log(`skipping agent ${quoted(bad.name)}: ${quoted(bad.reason, 300)}`);

  renderPhaseScripts(host.renderer, paths, config['config-dir']);
  // A running agent whose conf just went bad keeps its program (and its last good run) rather
  // than being stopped over a typo; it is reported until fixed.
  const keptBad = invalid.map((i) => i.name).filter(wasApplied);
  const names = [...agents.map((a) => a.name), ...keptBad].sort();
  state.ports = Object.fromEntries(names.map((n) => [n, state.ports[n] as number]));
  for (const name of keptBad) programs.set(name, readIfExists(paths.programFile(name)));
  const { removed: removedFiles } = writeProgramFiles(paths, programs);

  state.capacityProblem = capacityProblem(names.length, host.capacity()) ?? null;
  const started = await supervisor.ensureRunning(names.length);
  if (supervisor.writeLimits(names.length)) state.limitsRestartPending = started === 'already-running';
  const supervisorRestarted = state.limitsRestartPending && (options.mayRestartSupervisor || !agents.some(agentIsBusy));
  if (supervisorRestarted) {
    await log(`restarting supervisord for the limits of ${names.length} agents (no agent is running a job)`);
    await supervisor.restart();
    state.limitsRestartPending = false;
  }
  const programHashes = Object.fromEntries([...programs].map(([name, content]) => [name, sha256(content)]));
  const previousPrograms = state.appliedPrograms;
  const added = names.filter((n) => previousPrograms[n] === undefined);
  const removed = Object.keys(previousPrograms).filter((n) => !programs.has(n));
  const forced = names.filter((n) => previousPrograms[n] !== undefined && previousPrograms[n] !== programHashes[n]);
  const programsChanged = added.length + removed.length + forced.length > 0 || removedFiles.length > 0;
  if (programsChanged && started === 'already-running' && !supervisorRestarted) await supervisor.update();
  state.appliedPrograms = programHashes;

  const shared = sharedInputsHash(host, config);
  const sharedChanged = shared !== state.appliedShared;
  const contentChanged = agents.filter((a) => state.appliedAgents[a.name] !== undefined && state.appliedAgents[a.name] !== a.contentHash).map((a) => a.name);
  const restartable = names.filter((n) => !added.includes(n) && !forced.includes(n) && !keptBad.includes(n));
  // A restarted supervisord restarted every agent already.
  const toSignal = supervisorRestarted
    ? []
    : restartable.filter((n) => options.restartAll || sharedChanged || contentChanged.includes(n) || state.pendingRestart.includes(n));
  // Remembered until delivered: a signal that fails is retried by the next hook (update-status too).
  state.pendingRestart = toSignal;
  let signalled: string[] = [];
  try {
    ({ signalled } = await supervisor.signal(toSignal, 'USR1'));
    state.pendingRestart = [];
  } catch (error) {
    await log(`could not ask ${toSignal.join(', ')} to restart; will retry: ${(error as Error).message}`);
  }
  state.appliedShared = shared;
  const previousAgents = state.appliedAgents;
  const previousIds = state.agentIds;
  state.appliedAgents = Object.fromEntries(agents.map((a) => [a.name, a.contentHash]));
  state.agentIds = Object.fromEntries(agents.map((a) => [a.name, a.agentId]));
  for (const name of keptBad) {
    const before = previousAgents[name];
    const id = previousIds[name];
    if (before) state.appliedAgents[name] = before;
    if (id !== undefined) state.agentIds[name] = id;
  }
  return {
    agents: names,
    added,
    removed,
    changed: [...new Set([...contentChanged, ...forced])].sort(),
    restarted: signalled.sort(),
    forced,
    invalid: state.invalidAgents,
    revision: sync.revision,
  };
}

/** An agent is mid-job while its bookkeeping directory (`.<job>.agent`) exists. */
export function agentIsBusy(agent: AgentDir): boolean {
  try {
    return fs.readdirSync(agent.config.execution_basedir).some((name) => /^\..+\.agent$/.test(name));
  } catch {
    return false;
  }
}

function renderProgram(host: Host, config: CharmConfig, agent: AgentDir, port: number): string {
  const extraEnv: Record<string, string> = {};
  if (config['testflinger-server']) extraEnv['TESTFLINGER_SERVER'] = config['testflinger-server'];
  // The link path, not the checkout it points at, so the file survives a config-repo update.
  const linkDir = path.join(host.paths.configsDir, config['config-dir'], agent.name);
  return renderProgramFile(host.renderer, host.paths, {
    name: agent.name,
    confPath: path.join(linkDir, 'testflinger-agent.conf'),
    agentDir: linkDir,
    metricsPort: port,
    extraEnv,
  });
}
