/**
 * The basedirs a conf names (execution_basedir, logging_basedir, results_basedir) on a unit,
 * where each agent runs as its own user (docs/isolation.md, "Basedirs a conf names"): upstream's
 * shared default written out means the default (the agent's own state dir); any other is checked
 * here as a rule (where it may be, that no two agents share one) and then made by root before
 * the agent starts, one component at a time through directory descriptors, never following a
 * link, so that the leaf is the agent user's alone (0700) and nothing on the way is another
 * agent's. The conf is the config repo's: every value is hostile until these rules pass.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BASEDIR_KEYS, stateDirBasedir, type AgentConfig, type BasedirKey } from '../agent/config';
import type { FileOwner } from '../common/privileges';
import type { HostPaths } from './paths';
import { quoted } from './values';

/** One of an agent's basedirs, where it is on this host. */
export interface AgentBasedir {
  readonly key: BasedirKey;
  readonly dir: string;
}

export interface AgentBasedirs {
  readonly agent: string;
  readonly basedirs: readonly AgentBasedir[];
}

/** Longest basedir, and longest component: a path, not a payload. */
const MAX_BASEDIR_LENGTH = 200;
const COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,63}$/;
/** What a message may show as it is; anything else is shown quoted and escaped. */
const PLAIN_PATH = /^[A-Za-z0-9._+/-]{1,200}$/;
/** The agents' offline markers are /tmp/TESTFLINGER-DEVICE-OFFLINE-<agent>: no basedir may look like one. */
const MARKER_PREFIX = 'TESTFLINGER-';
/** Roots where a directory an agent's user owns is read by no program of root's or another user's. */
const SCRATCH_ROOTS = ['tmp', 'var/tmp'];
const ALLOWED = 'must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>, where a directory an agent owns runs nothing of root or another user';

/**
 * The agent's three basedirs as it will use them: those its conf names, or under its state dir
 * (none named, or upstream's shared default written out). `config` as discovery parses it (no state dir).
 */
export function agentBasedirs(agent: string, config: Pick<AgentConfig, BasedirKey>, stateDir: string): AgentBasedirs {
  return { agent, basedirs: BASEDIR_KEYS.map((key) => ({ key, dir: String(stateDirBasedir(key, config[key], stateDir)) })) };
}

function shown(dir: string): string {
  return PLAIN_PATH.test(dir) ? dir : quoted(dir, 100);
}

/** `execution_basedir /x/y: <why>`, as the agent's reason (the status and log name the agent). */
function reason(basedir: AgentBasedir, why: string): string {
  return `${basedir.key} ${shown(basedir.dir)}: ${why}`;
}

/** Why the path is no well-formed absolute path, or undefined. */
function formProblem(dir: string): string | undefined {
  if (dir.length > MAX_BASEDIR_LENGTH) return `longer than ${MAX_BASEDIR_LENGTH} characters`;
  if (!dir.startsWith('/')) return 'must be an absolute path';
  for (const component of dir.slice(1).split('/')) {
    if (component === '') return 'has an empty component (// or a trailing /)';
    if (component.startsWith('.')) return 'no component may start with "." (., .., hidden directories)';
    if (!COMPONENT.test(component)) return 'components must be letters, digits, . _ + - (at most 64), not starting with . + or -';
  }
  return undefined;
}

/** Whether `inner` is `outer` or inside it (both well-formed). */
function within(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(`${outer}/`);
}

/** Why the place is not one an agent's directory may be, or undefined. */
function placeProblem(dir: string, agent: string, paths: HostPaths): string | undefined {
  const parts = dir.slice(1).split('/');
  const scratch = SCRATCH_ROOTS.find((root) => dir.startsWith(`/${root}/`));
  if (scratch) return parts[scratch.split('/').length]?.startsWith(MARKER_PREFIX) ? `names starting with ${MARKER_PREFIX} there are the agents' offline markers` : undefined;
  if (parts[0] === 'home') return parts.length >= 4 ? undefined : 'under /home it must be at least two directories below a home (/home/<user>/<dir>/<dir>), so the home itself and what its shell reads (~/bin) stay the user\'s';
  if (parts[0] !== 'srv' || parts.length < 2) return ALLOWED;
  for (const own of [paths.configsDir, paths.runtimeDir]) {
    if (dir.startsWith(own)) return `${own} is the charm's own`;
  }
  const states = path.dirname(paths.agentStateDir(agent));
  if (within(dir, states) && !within(dir, paths.agentStateDir(agent))) return `under ${states} only the agent's own ${paths.agentStateDir(agent)} is allowed`;
  return undefined;
}

/** The first basedir of the agent that breaks a rule, as the agent's reason; undefined when none does. */
export function basedirRuleProblem(agent: AgentBasedirs, paths: HostPaths): string | undefined {
  for (const basedir of agent.basedirs) {
    const why = formProblem(basedir.dir) ?? placeProblem(basedir.dir, agent.agent, paths);
    if (why) return reason(basedir, why);
  }
  return undefined;
}

/**
 * Agents whose basedir is another agent's, or inside it, or holds it: each is refused, naming
 * the other (one agent's own basedirs may share a directory or nest).
 */
export function basedirConflicts(agents: readonly AgentBasedirs[]): Map<string, string> {
  const owners = new Map<string, { agent: string; basedir: AgentBasedir }>();
  for (const { agent, basedirs } of agents) for (const basedir of basedirs) if (!owners.has(basedir.dir)) owners.set(basedir.dir, { agent, basedir });
  const problems = new Map<string, string>();
  const refuse = (agent: string, why: string) => problems.has(agent) || problems.set(agent, why);
  for (const { agent, basedirs } of agents) {
    for (const basedir of basedirs) {
      const parts = basedir.dir.split('/');
      // The directory itself, then each ancestor, up to the root's children.
      for (let n = parts.length; n > 1; n--) {
        const other = owners.get(parts.slice(0, n).join('/'));
        if (!other || other.agent === agent) continue;
        const how = n === parts.length ? 'is also' : 'is inside';
        refuse(agent, reason(basedir, `${how} ${other.agent}'s ${other.basedir.key}`));
        refuse(other.agent, reason(other.basedir, `${n === parts.length ? 'is also' : 'holds'} ${agent}'s ${basedir.key}`));
      }
    }
  }
  return problems;
}

/** Every rule at once: agent name → its reason, for each agent that cannot have its basedirs. */
export function basedirProblems(agents: readonly AgentBasedirs[], paths: HostPaths): Map<string, string> {
  const problems = new Map<string, string>();
  for (const agent of agents) {
    const why = basedirRuleProblem(agent, paths);
    if (why) problems.set(agent.agent, why);
  }
  const ruled = agents.filter((a) => !problems.has(a.agent));
  for (const [agent, why] of basedirConflicts(ruled)) problems.set(agent, why);
  return problems;
}

/**
 * systemd-tmpfiles lines that make the basedirs under /tmp and /var/tmp again at boot, before
 * supervisord starts the agents (a boot empties /tmp; an agent would then make the shared parent
 * its own and lock the others out): root's 0755 on the way, the agent's 0700 as a leaf and below
 * one. The paths passed the rules: no whitespace, no `%` specifier.
 */
export function tmpfilesLines(agents: readonly AgentBasedirs[], userOf: (agent: string) => string): string {
  const lines = new Map<string, string>();
  for (const { agent, basedirs } of agents) {
    const user = userOf(agent);
    const leaves = basedirs.map((b) => b.dir);
    for (const { dir } of basedirs) {
      const scratch = SCRATCH_ROOTS.find((root) => dir.startsWith(`/${root}/`));
      if (!scratch) continue;
      const parts = dir.split('/');
      for (let n = scratch.split('/').length + 2; n <= parts.length; n++) {
        const at = parts.slice(0, n).join('/');
        const agentsOwn = leaves.some((leaf) => within(at, leaf));
        lines.set(at, agentsOwn ? `d ${at} 0700 ${user} ${user} -` : `d ${at} 0755 root root -`);
      }
    }
  }
  return [...lines.keys()].sort().map((at) => lines.get(at)).join('\n');
}

// ---- On the host: root makes the basedirs, through directory descriptors ----

export class BasedirError extends Error {
  override readonly name = 'BasedirError';
}

/** Who may own what on the way: the agent's user (ids once made), every agent user, names for messages. */
export interface BasedirOwners {
  readonly ownName: string;
  readonly own: FileOwner | undefined;
  readonly agentUids: ReadonlySet<number>;
  readonly nameOf: (uid: number) => string;
}

export interface WalkOptions {
  /** Make what is missing and give the leaf its owner; false: only check what exists (nothing changes). */
  readonly make: boolean;
  /** Lets the agent's user traverse a directory it cannot (a 0750 home): gets a path to the open directory. */
  readonly grantTraverse?: (dirPath: string) => Promise<void>;
}

const OPEN_DIR = fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;
const ROOT_DIR_MODE = 0o755;
const AGENT_DIR_MODE = 0o700;
/** Writable by more than its owner, and not sticky: anyone who may write it may swap what is in it. */
const looselyWritable = (mode: number) => (mode & 0o022) !== 0 && (mode & 0o1000) === 0;

/** `name` in the directory open as `fd`: the kernel resolves it there, whatever happened to the path. */
const inDir = (fd: number, name: string) => `/proc/self/fd/${fd}/${name}`;

/** Opens a directory entry without following it; undefined when there is none. `shownAs`: its path, for messages. */
function openEntry(fd: number, name: string, shownAs: string): number | undefined {
  try {
    return fs.openSync(inDir(fd, name), OPEN_DIR);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // O_NOFOLLOW with O_DIRECTORY says ENOTDIR for a link: lstat (which does not follow it either) tells them apart.
    const link = code === 'ELOOP' || fs.lstatSync(inDir(fd, name), { throwIfNoEntry: false })?.isSymbolicLink();
    if (link) throw new BasedirError(`${shownAs} is a symbolic link; it must be a directory`);
    if (code === 'ENOTDIR') throw new BasedirError(`${shownAs} is not a directory`);
    throw new BasedirError(`${shownAs}: ${code ?? (error as Error).message}`);
  }
}

/** A directory made by root here: root's on the way, the agent's as the leaf or inside the agent's own. */
function makeEntry(fd: number, name: string, shownAs: string, owner: FileOwner, mode: number): number {
  fs.mkdirSync(inDir(fd, name), { mode: 0o700 });
  const made = openEntry(fd, name, shownAs);
  if (made === undefined) throw new BasedirError(`${shownAs} vanished as it was made`);
  try {
    fs.fchownSync(made, owner.uid, owner.gid);
    fs.fchmodSync(made, mode);
  } catch (error) {
    fs.closeSync(made);
    throw error;
  }
  return made;
}

/** Why an existing directory may not be on the way to, or be, the agent's leaf; undefined when it may. */
function existingProblem(stat: fs.Stats, leaf: boolean, owners: BasedirOwners): string | undefined {
  const owned = owners.own !== undefined && stat.uid === owners.own.uid;
  if (leaf) return owned ? undefined : `exists, owned by ${owners.nameOf(stat.uid)}; it must be ${owners.ownName}'s`;
  if (!owned && owners.agentUids.has(stat.uid)) return `is owned by the agent user ${owners.nameOf(stat.uid)}`;
  if (!owned && looselyWritable(stat.mode)) return `is writable by others than its owner (mode ${(stat.mode & 0o7777).toString(8)}, not sticky)`;
  return undefined;
}

/**
 * Walks `dir` from `/`, one component at a time, each opened relative to the last with
 * O_NOFOLLOW: a link, a non-directory, another agent's directory or one anybody may rearrange
 * is refused. With `make`, a missing directory is made (root's 0755 on the way; the agent's
 * 0700 as the leaf, or below a directory of the agent's own), the leaf is made 0700, and the
 * agent's user is let through what it cannot traverse.
 */
export async function walkBasedir(dir: string, owners: BasedirOwners, options: WalkOptions): Promise<void> {
  const names = dir.slice(1).split('/');
  let fd = fs.openSync('/', OPEN_DIR);
  let insideOwn = false;
  try {
    for (const [i, name] of names.entries()) {
      const leaf = i === names.length - 1;
      const shownAs = `/${names.slice(0, i + 1).join('/')}`;
      const existing = openEntry(fd, name, shownAs);
      if (existing === undefined && !options.make) return;
      const agentsDir = leaf || insideOwn;
      let next: number;
      if (existing === undefined) {
        if (agentsDir && !owners.own) throw new BasedirError(`there is no user ${owners.ownName}`);
        next = makeEntry(fd, name, shownAs, agentsDir ? (owners.own as FileOwner) : { uid: 0, gid: 0 }, agentsDir ? AGENT_DIR_MODE : ROOT_DIR_MODE);
      } else {
        next = existing;
        const stat = fs.fstatSync(next);
        const why = existingProblem(stat, leaf, owners);
        if (why) {
          fs.closeSync(next);
          throw new BasedirError(`${shownAs} ${why}`);
        }
        insideOwn ||= owners.own !== undefined && stat.uid === owners.own.uid;
        if (leaf && options.make) fs.fchmodSync(next, AGENT_DIR_MODE);
        // Others may not pass (a 0750 home): the agent's user is let through, and no further.
        if (!leaf && !insideOwn && (stat.mode & 0o001) === 0 && options.make) await options.grantTraverse?.(`/proc/${process.pid}/fd/${next}`);
      }
      fs.closeSync(fd);
      fd = next;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Each basedir of the agent walked (outer ones first, so one inside another of its own finds it made); the first failure as the agent's reason. */
export async function walkAgentBasedirs(agent: AgentBasedirs, owners: BasedirOwners, options: WalkOptions): Promise<string | undefined> {
  const byDepth = [...agent.basedirs].sort((a, b) => a.dir.length - b.dir.length);
  for (const basedir of byDepth) {
    try {
      await walkBasedir(basedir.dir, owners, options);
    } catch (error) {
      if (error instanceof BasedirError) return reason(basedir, error.message);
      return reason(basedir, `cannot be made: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  return undefined;
}

/** The uids of the agents' group's members (`testflinger-agents:x:<gid>:tf-a,tf-b`), through passwd. */
export function agentUids(groupText: string, group: string, uidOf: (user: string) => number | undefined): Set<number> {
  const line = groupText.split('\n').find((l) => l.startsWith(`${group}:`));
  const members = (line?.split(':')[3] ?? '').split(',').filter(Boolean);
  return new Set(members.map(uidOf).filter((uid): uid is number => uid !== undefined));
}
