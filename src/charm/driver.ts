/**
 * How the host is driven, as opposed to where its files are (paths.ts). Two drivers, chosen once
 * when the charm starts: `unit` (a real machine: apt-get, one user per agent, each agent in a
 * cgroup of its own, Debian's supervisord under systemd) and `sandbox` (AGENT_HOST_ROOT: no
 * packages, no users, the charm's own supervisord; agents contain their phases as they can). Nothing outside this file asks which one it is. See docs/architecture.md.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Runner } from '../common/exec';
import { writeFileAtomic } from '../common/fsutil';
import type { FileOwner } from '../common/privileges';
import { METRICS_HOST_ENV, SANDBOX_PROGRAM_ENV, STATE_DIR_ENV, TEST_SANDBOX_ENV } from '../common/contract';
import { agentSshFiles, writeAgentFiles } from './agentfiles';
import { layOutUnitDirectories } from './unitdirs';
import { AGENTS_GROUP, addAgentUser, AgentUserClaims, agentUserName, ensureAgentsGroup, lockAgentUser, readHostUsers, readIdFile, unlockAgentUser, type HostUsers } from './agentusers';
import { agentUids, basedirProblems, tmpfilesLines, walkAgentBasedirs, type AgentBasedirs, type BasedirOwners } from './basedirs';
import type { CharmConfig } from './config';
import { prepareRootTokenFile } from './auth';
import { giveAgentDir, restrictCheckouts } from './configrepo';
import { delegationCurrent, installContainedWrapper, installSandboxProgram, loadApparmorProfile, sandboxProblem, writeDelegation } from './isolation';
import { supervisorLimits, withAgentLimits } from './limits';
import { installPackages, UNIT_PACKAGES } from './packages';
import type { HostPaths } from './paths';
import { sharedSshFiles, writeSshFiles, type SshFileSpec } from './ssh';
import type { SupervisorControl } from './supervisor';
import type { TemplateRenderer } from './templates';

export type DriverKind = 'unit' | 'sandbox';

/** systemd-tmpfiles' drop-in that makes the agents' basedirs in /tmp and /var/tmp at boot (on a unit). */
export const BASEDIRS_TMPFILES = 'etc/tmpfiles.d/testflinger-agent-basedirs.conf';

/** A file's text, or '' when it does not exist (yet). */
export function readIfExists(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** How one agent is run: what its program file says besides the agent's own arguments. */
export interface AgentRun {
  /** `user=` of the program file; none: supervisord's user (on a unit, the wrapper drops to the agent's user). */
  readonly user?: string;
  /** What comes before the agent program on `command=` (the wrapper, its user and cgroup name). */
  readonly commandPrefix: readonly string[];
  /** `directory=` and HOME. */
  readonly home: string;
  /** Environment beyond what every agent gets (renderProgramFile). */
  readonly env: Readonly<Record<string, string>>;
}

/** How supervisord itself is run: its limits, its cgroup delegation, its start and its restart. */
export interface SupervisordDaemon {
  /** Whether the limits on disk are the ones for this many agents (read, not rendered). */
  limitsCurrent(agentCount: number): boolean;
  /** Writes the limits for this many agents; true when the file changed. */
  writeLimits(agentCount: number): boolean;
  /** Whether supervisord's service delegates its cgroup (always, where no systemd runs it). */
  delegationCurrent(): boolean;
  /** Writes the delegation (it applies at the next restart); true when it changed. */
  writeDelegation(): Promise<boolean>;
  /** Starts supervisord; returns once it was asked to (the caller waits for its socket). */
  start(): Promise<void>;
  /** Restarts supervisord, whose programs the caller (its client) has stopped already. */
  restart(client: Pick<SupervisorControl, 'shutdown'>): Promise<void>;
}

/** What one event changes about the agents' users, by agent name (plan.ts decides). */
export interface AgentUserChange {
  readonly add: readonly string[];
  readonly lock: readonly string[];
  readonly unlock: readonly string[];
}

export interface PrepareAgentsOptions {
  /** Every agent with a program file after this event. */
  readonly agents: readonly string[];
  readonly users: AgentUserChange;
  /** Check that the test sandbox works (when `test-sandbox` is on). */
  readonly checkSandbox: boolean;
  /** Each valid agent's basedirs (refusedBasedirs passed them), made before the agents start; undefined: as last applied. */
  readonly basedirs: readonly AgentBasedirs[] | undefined;
  readonly log: (message: string) => Promise<void>;
}

/** Whether the test sandbox was checked this time, and why it cannot run if it cannot. */
export type SandboxCheck = { readonly checked: false } | { readonly checked: true; readonly problem: string | null };
const UNCHECKED: SandboxCheck = Object.freeze({ checked: false });

export interface HostDriver {
  readonly kind: DriverKind;
  /** The distribution packages the host needs; `log` says what was done or skipped. */
  installPackages(log: (message: string) => Promise<void>): Promise<void>;
  /**
   * What must hold before the config repo is read, on every pull: in a sandbox the shared SSH
   * files (a link planted for ~/.ssh blocks the unit before anything changes); on a unit the
   * agents' group and the wrapper that contains them.
   */
  prepareHost(config: CharmConfig): Promise<void>;
  /** The host's users (which are locked too); null where the host makes none for agents (a sandbox). */
  hostUsers(): HostUsers | null;
  /**
   * Before the agents' program files are written: their users (made or locked), their homes,
   * SSH files, state directories and basedirs, and what containing them needs; the test sandbox checked
   * when asked or when its program changed.
   */
  prepareAgents(config: CharmConfig, options: PrepareAgentsOptions): Promise<SandboxCheck>;
  /** How the named agent is run. */
  agentRun(agent: string, config: CharmConfig): AgentRun;
  /** Where the agent's basedirs go when its conf names none; undefined: the agent's own defaults. */
  agentStateDir(agent: string): string | undefined;
  /**
   * Agents whose conf's own basedirs cannot be theirs alone (agent → reason naming the key):
   * the rules (basedirs.ts), then what exists on the way, read without changing anything.
   */
  refusedBasedirs(agents: readonly AgentBasedirs[]): Promise<Map<string, string>>;
  /** The ids of the user the agent runs as, for work done as that user; none: as we are (a sandbox). */
  agentOwner(agent: string): FileOwner | undefined;
  /** The SSH files the charm keeps for these agents: each agent's own, or a sandbox's shared ones. */
  sshFiles(config: CharmConfig, agents: readonly string[]): SshFileSpec[];
  /** The refresh token file is root's alone (each agent gets a descriptor from its wrapper); none: ours, read by path. */
  tokenOwner(): Promise<FileOwner | undefined>;
  readonly supervisord: SupervisordDaemon;
}

/** The agent's user, its cgroup and its sandbox, through the root wrapper (docs/isolation.md). */
export function unitAgentRun(paths: HostPaths, agent: string, testSandbox: boolean): AgentRun {
  const user = agentUserName(agent);
  const home = paths.agentHome(agent);
  return {
    commandPrefix: [paths.containedProgram, user, agent],
    home,
    env: {
      HOME: home,
      USER: user,
      [STATE_DIR_ENV]: paths.agentStateDir(agent),
      [TEST_SANDBOX_ENV]: testSandbox ? 'on' : 'off',
      [SANDBOX_PROGRAM_ENV]: paths.sandboxProgram,
    },
  };
}

/** A sandbox runs every agent as itself, in the shared home, and exposes nothing beyond loopback. */
export function sandboxAgentRun(paths: HostPaths): AgentRun {
  return { commandPrefix: [], home: paths.homeDir, env: { HOME: paths.homeDir, USER: 'ubuntu', [METRICS_HOST_ENV]: '127.0.0.1' } };
}

/**
 * Whether the file already carries the limits for this many agents: its `minfds=` and
 * `minprocs=` lines are read, nothing is rendered (the unchanged hook's check).
 */
function limitsIn(file: string, agentCount: number): boolean {
  const text = readIfExists(file);
  const wanted = supervisorLimits(agentCount);
  const value = (key: string) => Number(new RegExp(`^${key}=(\\d+)$`, 'm').exec(text)?.[1]);
  return value('minfds') === wanted.minfds && value('minprocs') === wanted.minprocs;
}

function limitsFileContent(renderer: TemplateRenderer, agentCount: number): string {
  return renderer.render('templates/limits.conf.hbs', { agents: agentCount, ...supervisorLimits(agentCount) });
}

/** A real unit: apt-get, a user per agent, Debian's supervisord with a limits drop-in, systemctl. */
export function unitDriver(paths: HostPaths, run: Runner, renderer: TemplateRenderer, charmDir: string): HostDriver {
  // The group does not change within one event; it is looked up (or made) once.
  let group: Promise<number> | undefined;
  const agentsGid = () => (group ??= ensureAgentsGroup(run, path.join(paths.root, 'etc/group')));
  const passwd = path.join(paths.root, 'etc/passwd');
  const hostUsers = () => readHostUsers(passwd, path.join(paths.root, 'etc/shadow'), path.dirname(paths.agentHome('x')));
  // An agent whose user is another agent's cannot be rendered: it is skipped, named (agentusers.ts).
  const claims = new AgentUserClaims(hostUsers);
  return {
    kind: 'unit',
    installPackages: async () => {
      await installPackages(run, UNIT_PACKAGES);
      await agentsGid();
    },
    prepareHost: async () => {
      prepareRootTokenFile(paths.tokenFile);
      installContainedWrapper(paths, charmDir);
      restrictCheckouts(paths.configsDir, await agentsGid());
    },
    hostUsers,
    prepareAgents: async (config, options) => {
      const gid = await agentsGid();
      await changeAgentUsers(run, paths, options.users);
      const users = readIdFile(passwd);
      for (const agent of options.agents) {
        const user = users.get(agentUserName(agent));
        if (!user) throw new Error(`no user ${agentUserName(agent)} for agent ${agent}`);
        writeAgentFiles(paths, config, { name: agent, user }, gid);
        giveAgentDir(path.join(paths.configsDir, config['config-dir'], agent), user.gid);
      }
      if (options.basedirs) await makeBasedirs(run, paths, options.basedirs, options.log);
      if (!config['test-sandbox'] || options.agents.length === 0) return UNCHECKED;
      return prepareSandbox(run, paths, gid, agentUserName(options.agents[0] as string), options);
    },
    agentRun: (agent, config) => {
      claims.claim(agent);
      return withAgentLimits(unitAgentRun(paths, agent, config['test-sandbox']), config);
    },
    agentStateDir: (agent) => paths.agentStateDir(agent),
    refusedBasedirs: async (agents) => {
      const problems = basedirProblems(agents, paths);
      const ownersOf = basedirOwners(paths);
      for (const agent of agents.filter((a) => !problems.has(a.agent))) {
        const why = await walkAgentBasedirs(agent, ownersOf(agent.agent), { make: false });
        if (why) problems.set(agent.agent, why);
      }
      return problems;
    },
    agentOwner: (agent) => readIdFile(passwd).get(agentUserName(agent)),
    sshFiles: (config, agents) => agents.flatMap((agent) => agentSshFiles(paths, config, agent)),
    tokenOwner: async () => ({ uid: 0, gid: 0 }),
    supervisord: {
      // supervisord merges [supervisord] from included files: the drop-in sits beside the programs.
      limitsCurrent: (count) => limitsIn(paths.limitsFile, count),
      writeLimits: (count) => writeFileAtomic(paths.limitsFile, limitsFileContent(renderer, count)),
      delegationCurrent: () => delegationCurrent(paths),
      writeDelegation: () => writeDelegation(run, paths),
      start: async () => {
        await run('systemctl', ['start', 'supervisor']);
      },
      restart: async () => {
        await run('systemctl', ['restart', 'supervisor']);
      },
    },
  };
}

/** Makes, locks and unlocks the agents' users as planned. */
async function changeAgentUsers(run: Runner, paths: HostPaths, change: AgentUserChange): Promise<void> {
  for (const agent of change.add) await addAgentUser(run, agentUserName(agent), paths.agentHome(agent));
  for (const agent of change.lock) await lockAgentUser(run, agentUserName(agent));
  for (const agent of change.unlock) await unlockAgentUser(run, agentUserName(agent));
}

/** Who owns what, as the host's passwd and group files say now: for the named agent's basedirs. */
function basedirOwners(paths: HostPaths): (agent: string) => BasedirOwners {
  const users = readIdFile(path.join(paths.root, 'etc/passwd'));
  const names = new Map([...users].map(([name, ids]) => [ids.uid, name]));
  // An agent user is a member of the agents' group or, once locked (it leaves the group), a user
  // made for an agent (its home is an agent's): a removed agent's user is never "the host's own".
  const madeForAgents = readHostUsers(path.join(paths.root, 'etc/passwd'), path.join(paths.root, 'etc/shadow'), path.dirname(paths.agentHome('x'))).owners ?? new Map<string, string>();
  const uids = agentUids(readIfExists(path.join(paths.root, 'etc/group')), AGENTS_GROUP, (user) => users.get(user)?.uid);
  for (const user of madeForAgents.keys()) {
    const uid = users.get(user)?.uid;
    if (uid !== undefined) uids.add(uid);
  }
  return (agent) => ({ ownName: agentUserName(agent), own: users.get(agentUserName(agent)), agentUids: uids, nameOf: (uid) => names.get(uid) ?? `uid ${uid}` });
}

/**
 * Makes each agent's own basedirs (basedirs.ts); the agent's user gets traverse-only access
 * (an ACL entry, `--x`) to a directory on the way it cannot pass, such as a 0750 home. One that
 * fails (changed since it was checked) is logged, naming the agent and key; the others go on.
 */
async function makeBasedirs(run: Runner, paths: HostPaths, agents: readonly AgentBasedirs[], log: (message: string) => Promise<void>): Promise<void> {
  const ownersOf = basedirOwners(paths);
  const made: AgentBasedirs[] = [];
  for (const agent of agents) {
    const user = agentUserName(agent.agent);
    const grantTraverse = async (dirPath: string) => {
      await run('setfacl', ['-m', `u:${user}:--x`, '--', dirPath]);
    };
    const why = await walkAgentBasedirs(agent, ownersOf(agent.agent), { make: true, grantTraverse });
    if (why) await log(`${agent.agent}: ${why}`);
    else made.push(agent);
  }
  writeTmpfilesLines(paths, made);
}

/** The basedirs in /tmp and /var/tmp, made again at boot before supervisord starts (basedirs.ts, tmpfilesLines). */
function writeTmpfilesLines(paths: HostPaths, agents: readonly AgentBasedirs[]): void {
  const file = path.join(paths.root, BASEDIRS_TMPFILES);
  const lines = tmpfilesLines(agents, agentUserName);
  if (lines === '' && !fs.existsSync(file)) return;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, `# Made by the testflinger-agent-host charm: its agents' basedirs in /tmp and /var/tmp, made again at boot.\n${lines}\n`);
}

/**
 * The charm's bwrap (copied again when the distribution's changed) and its AppArmor profile in
 * place; checked as `user` when asked or when the copy changed. A failed check loads the profile
 * again once (a profile changed by hand, a boot without AppArmor's cache) and checks again.
 */
async function prepareSandbox(run: Runner, paths: HostPaths, agentsGid: number, user: string, options: PrepareAgentsOptions): Promise<SandboxCheck> {
  let copied: boolean;
  try {
    copied = installSandboxProgram(paths, agentsGid);
  } catch (error) {
    return { checked: true, problem: (error as Error).message };
  }
  await loadApparmorProfile(run, paths, options.log, false);
  if (!copied && !options.checkSandbox) return UNCHECKED;
  if ((await sandboxProblem(run, paths, user)) === undefined) return { checked: true, problem: null };
  await loadApparmorProfile(run, paths, options.log, true);
  return { checked: true, problem: (await sandboxProblem(run, paths, user)) ?? null };
}

const SOCKET_GONE_WAIT_MS = 15_000;

/** AGENT_HOST_ROOT: nothing installed, no users, the charm's own supervisord under the root. */
export function sandboxDriver(paths: HostPaths, renderer: TemplateRenderer): HostDriver {
  const conf = (count: number) =>
    renderer.render('templates/supervisord.conf.hbs', {
      root: paths.root,
      socket: paths.supervisorSocket,
      logDir: paths.supervisorLogDir,
      pidFile: paths.supervisorPidFile,
      programDir: paths.programDir,
      ...supervisorLimits(count),
    });
  const start = () => startSandboxSupervisord(paths);
  return {
    kind: 'sandbox',
    installPackages: (log) => log(`sandbox root ${paths.root}: skipping packages (${UNIT_PACKAGES.join(', ')}) and the agents' users`),
    // One user for every agent (ours): the SSH files are the shared home's.
    prepareHost: async (config) => {
      layOutUnitDirectories(paths.root);
      writeSshFiles(paths, config, undefined);
    },
    hostUsers: () => null,
    prepareAgents: async () => UNCHECKED,
    agentRun: (_agent, config) => withAgentLimits(sandboxAgentRun(paths), config),
    agentStateDir: () => undefined,
    // One user for every agent: the confs' basedirs are used as they are.
    refusedBasedirs: async () => new Map(),
    agentOwner: () => undefined,
    sshFiles: (config) => sharedSshFiles(paths, config),
    tokenOwner: async () => undefined,
    supervisord: {
      // The limits live in the sandbox's own supervisord.conf.
      limitsCurrent: (count) => limitsIn(paths.supervisordConf, count),
      writeLimits: (count) => {
        for (const dir of [paths.programDir, paths.supervisorLogDir, path.dirname(paths.supervisorSocket)]) fs.mkdirSync(dir, { recursive: true });
        return writeFileAtomic(paths.supervisordConf, conf(count));
      },
      // No systemd runs it: nothing to delegate (agents fall back to PID namespaces and say so).
      delegationCurrent: () => true,
      writeDelegation: async () => false,
      start,
      restart: async (client) => {
        await client.shutdown();
        await waitForPidFileGone(paths);
        await start();
      },
    },
  };
}

/** supervisord removes its pid file last; the next one cannot start before it is gone. */
async function waitForPidFileGone(paths: HostPaths): Promise<void> {
  const deadline = Date.now() + SOCKET_GONE_WAIT_MS;
  while (Date.now() < deadline && fs.existsSync(paths.supervisorPidFile)) await new Promise((r) => setTimeout(r, 50));
}

function startSandboxSupervisord(paths: HostPaths): Promise<void> {
  // supervisord forks into the background; its first process exits once the daemon is set up.
  return new Promise((resolve, reject) => {
    const child = spawn('supervisord', ['-c', paths.supervisordConf], { stdio: 'ignore', detached: true });
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === 'ENOENT' ? 'supervisord is not installed (install the supervisor package)' : `cannot start supervisord: ${error.message}`)),
    );
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`supervisord -c ${paths.supervisordConf} exited with ${code}`))));
  });
}

/** The driver for this process: a sandbox exactly when AGENT_HOST_ROOT is set (paths.ts checks it). */
export function driverKindFromEnv(env: NodeJS.ProcessEnv): DriverKind {
  return env['AGENT_HOST_ROOT'] ? 'sandbox' : 'unit';
}

export function createDriver(kind: DriverKind, paths: HostPaths, run: Runner, renderer: TemplateRenderer, charmDir: string): HostDriver {
  return kind === 'unit' ? unitDriver(paths, run, renderer, charmDir) : sandboxDriver(paths, renderer);
}
