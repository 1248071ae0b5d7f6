/**
 * Where a phase's processes live, so that all of them can be found and ended when the phase
 * ends, daemons that left its process group included. Chosen once per agent, best first:
 *
 * - `cgroup`: the agent's own cgroup (v2) is writable (the charm delegates one per agent): each
 *   phase gets `<own>/phase-<agent pid>-<n>`, entered before the command runs, listed and
 *   ended with `cgroup.kill` at the end.
 * - `pid-namespace`: `unshare --pid --fork --kill-child` (`--map-current-user` when not root): the
 *   kernel ends every process of the namespace when its first process exits.
 * - `process-group`: neither works; a process that leaves the group can outlive its phase.
 *
 * Each kind also bounds what a phase may use (the charm's agent-max-processes and
 * agent-max-memory): on a unit the root wrapper gave the agent its rlimits (and its cgroup
 * pids.max and memory.max) already; elsewhere each phase gets them through prlimit. A phase that
 * hits one is told so in its output.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONTAINMENT_ENV, MAX_MEMORY_ENV, MAX_PROCESSES_ENV } from '../common/contract';

export type ContainmentKind = 'cgroup' | 'pid-namespace' | 'process-group';

/** A process found still running when its phase ended, and so killed. */
export interface LeftoverProcess {
  pid: number;
  name: string;
}

/** What survives the agent being killed, to end the phase's processes from the next agent. */
export interface ScopeRecord {
  kind: ContainmentKind;
  cgroup?: string;
}

export interface Containment {
  readonly kind: ContainmentKind;
  /** One line for the agent's log: what is contained and, when degraded, why. */
  readonly description: string;
  /** A scope for one phase; `inNamespace` when the command already gets a PID namespace (the sandbox). */
  openPhase(inNamespace: boolean): PhaseScope;
  /** Ends what crashed agent processes left that no job's bookkeeping names (after recovery). */
  sweep(): Promise<void>;
}

export interface PhaseScope {
  readonly record: ScopeRecord;
  /** Prefix for the spawn argv: the command starts inside the scope. */
  readonly prefix: string[];
  /** Whether the command reports, on fd 3, what it left in its PID namespace. */
  readonly reportsOnFd3: boolean;
  /** Sends `signal` to every process of the phase (`pid`: the spawned process, its group leader). */
  signal(pid: number, signal: NodeJS.Signals): void;
  /** Kills every process still in the scope and says which ones were there. */
  end(pid: number): Promise<LeftoverProcess[]>;
  /** Sees the phase's output as it comes (to notice a limit hit). */
  observe?(text: string): void;
  /** After end(): a line for the phase's output when the phase hit one of its agent's limits. */
  limitNote?(): string | undefined;
}

/** How long `cgroup.kill` may take to empty a cgroup before rmdir is tried anyway. */
const CGROUP_EMPTY_WAIT_MS = 2000;
const CGROUP_POLL_MS = 10;
/** How long the processes of a PID namespace that ended may take to leave their cgroup. */
const NAMESPACE_EXIT_WAIT_MS = 500;
/** Bound on processes read from one cgroup (a fork bomb must not make the agent spin). */
const MAX_LISTED = 4096;

/**
 * The pid 1 stand-in inside a PID namespace: runs the command (without fd 3), then names every
 * process it left, on fd 3, before the namespace ends and the kernel kills them.
 */
export const NAMESPACE_REAPER = [
  '/bin/sh -c "$1" 3>&-; rc=$?',
  'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] && continue',
  '  read -r name <"$d/comm" 2>/dev/null && echo "$p $name" >&3; done',
  'exit $rc',
].join('\n');

export function reaperArgv(command: string): string[] {
  return ['/bin/sh', '-c', NAMESPACE_REAPER, 'reaper', command];
}

/** Parses the reaper's lines (`<pid> <name>`), keeping names printable. */
export function parseReaperReport(text: string): LeftoverProcess[] {
  return text
    .split('\n')
    .map((line) => /^(\d+) (.{1,64})$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .slice(0, MAX_LISTED)
    .map((m) => ({ pid: Number(m[1]), name: printable(m[2] as string) }));
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

export function describeLeftovers(phase: string, leftovers: readonly LeftoverProcess[]): string {
  const names = leftovers.map((p) => `${p.name}(${p.pid})`).join(', ');
  const count = leftovers.length === 1 ? '1 process' : `${leftovers.length} processes`;
  return `cleanup: ${count} left by the ${phase} phase ${leftovers.length === 1 ? 'was' : 'were'} killed: ${names}`;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

// ---- cgroup v2 ----

/** The cgroup v2 mount point, from this process's mount table. */
function cgroup2Mount(): string | undefined {
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  for (const line of lines) {
    const [mountFields, fsFields] = line.split(' - ');
    if (fsFields?.split(' ')[0] === 'cgroup2') return mountFields?.split(' ')[4];
  }
  return undefined;
}

/** This process's own cgroup v2 directory, or why there is none. */
export function ownCgroup(): { dir: string } | { why: string } {
  try {
    const mount = cgroup2Mount();
    if (!mount) return { why: 'no cgroup v2 mounted' };
    const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (!line) return { why: 'this process is in no cgroup v2' };
    return { dir: path.join(mount, line.slice(3)) };
  } catch (error) {
    return { why: (error as Error).message };
  }
}

function readPids(cgroup: string): number[] {
  try {
    return fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).slice(0, MAX_LISTED).map(Number);
  } catch {
    return [];
  }
}

function processName(pid: number): string {
  try {
    return printable(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
  } catch {
    return '?';
  }
}

/** Lists, kills (cgroup.kill, or SIGKILL each on kernels before 5.14) and removes a phase cgroup. */
export async function endCgroup(cgroup: string): Promise<LeftoverProcess[]> {
  if (!fs.existsSync(cgroup)) return [];
  const leftovers = readPids(cgroup).map((pid) => ({ pid, name: processName(pid) }));
  if (leftovers.length > 0) killAll(cgroup, leftovers);
  // A clean phase's cgroup goes at once; one still emptying gets short, growing waits.
  const deadline = Date.now() + CGROUP_EMPTY_WAIT_MS;
  for (let wait = 1; !removed(cgroup) && Date.now() < deadline; wait = Math.min(wait * 2, CGROUP_POLL_MS)) await new Promise((r) => setTimeout(r, wait));
  // One that never emptied stays for the sweep of the next agent process.
  return leftovers;
}

function removed(cgroup: string): boolean {
  try {
    fs.rmdirSync(cgroup);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** Waits (bounded, short steps) until the cgroup holds no process; false if it still does. */
async function emptied(cgroup: string, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (let wait = 1; readPids(cgroup).length > 0; wait = Math.min(wait * 2, CGROUP_POLL_MS)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, wait));
  }
  return true;
}

function killAll(cgroup: string, processes: readonly LeftoverProcess[]): void {
  try {
    fs.writeFileSync(path.join(cgroup, 'cgroup.kill'), '1');
  } catch {
    for (const { pid } of processes) killQuietly(pid, 'SIGKILL');
  }
}

/**
 * Removes the phase cgroups of agent processes that are gone (a crash whose bookkeeping was
 * lost): emptied with cgroup.kill first. Those of live processes (other agents sharing the
 * cgroup, in a sandbox) are left alone.
 */
async function sweepDeadPhases(own: string): Promise<void> {
  for (const name of fs.readdirSync(own)) {
    const owner = /^phase-(\d+)-\d+$/.exec(name)?.[1];
    if (owner && Number(owner) !== process.pid && !fs.existsSync(`/proc/${owner}`)) await endCgroup(path.join(own, name));
  }
}

class CgroupContainment implements Containment {
  readonly kind = 'cgroup';
  private phases = 0;
  constructor(private readonly own: string) {}

  sweep(): Promise<void> {
    return sweepDeadPhases(this.own).catch(() => undefined);
  }

  get description(): string {
    return `each phase runs in its own cgroup under ${JSON.stringify(this.own)}; what it leaves is killed when it ends`;
  }

  openPhase(inNamespace: boolean): PhaseScope {
    const cgroup = path.join(this.own, `phase-${process.pid}-${++this.phases}`);
    fs.mkdirSync(cgroup);
    return {
      record: { kind: this.kind, cgroup },
      // The shell moves itself in before exec'ing the command: nothing of the phase runs outside.
      prefix: ['/bin/sh', '-c', 'echo $$ >"$0/cgroup.procs" || exit 125; exec "$@"', cgroup],
      // In a PID namespace the kernel kills leftovers before the cgroup can list them.
      reportsOnFd3: inNamespace,
      signal: (_pid, signal) => {
        for (const pid of readPids(cgroup)) killQuietly(pid, signal);
      },
      end: async () => {
        // The namespace's end already killed its processes; give them a moment to leave the
        // cgroup, so that they are not named twice (once by the reaper, once here).
        if (inNamespace) await emptied(cgroup, NAMESPACE_EXIT_WAIT_MS);
        return endCgroup(cgroup);
      },
    };
  }
}

/** A probe cgroup made and removed: creating phase cgroups works here. */
function cgroupUsable(): { dir: string } | { why: string } {
  const own = ownCgroup();
  if ('why' in own) return own;
  const probe = path.join(own.dir, `phase-${process.pid}-probe`);
  try {
    fs.mkdirSync(probe);
    fs.rmdirSync(probe);
    return own;
  } catch (error) {
    return { why: `cannot create a cgroup in ${JSON.stringify(own.dir)} (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

// ---- PID namespace and process group ----

function unshareArgv(): string[] {
  const asRoot = process.getuid?.() === 0;
  return ['unshare', ...(asRoot ? [] : ['--map-current-user']), '--pid', '--fork', '--kill-child', '--mount-proc', '--'];
}

function pidNamespaceUsable(): { ok: true } | { why: string } {
  const probe = spawnSync(unshareArgv()[0] as string, [...unshareArgv().slice(1), '/bin/true'], { encoding: 'utf8', timeout: 5000 });
  if (probe.error) return { why: `unshare: ${probe.error.message}` };
  if (probe.status !== 0) return { why: `unshare could not make a PID namespace: ${probe.stderr.trim().split('\n')[0] ?? probe.status}` };
  return { ok: true };
}

/** The scope of a phase run without containment (tests of the runner itself). */
export function processGroupScope(): PhaseScope {
  return groupScope('process-group', [], false);
}

/** Signals the spawned process's group: the namespace's holder (unshare, bwrap) or the command. */
function groupScope(kind: ContainmentKind, prefix: string[], reportsOnFd3: boolean): PhaseScope {
  return {
    record: { kind },
    prefix,
    reportsOnFd3,
    signal: (pid, signal) => killQuietly(-pid, signal),
    end: async (pid) => {
      killQuietly(-pid, 'SIGKILL');
      return [];
    },
  };
}

class PidNamespaceContainment implements Containment {
  readonly kind = 'pid-namespace';
  constructor(readonly description: string) {}
  openPhase(inNamespace: boolean): PhaseScope {
    return groupScope(this.kind, inNamespace ? [] : unshareArgv(), true);
  }
  /** A namespace dies with its holder: nothing outlives a crash to sweep. */
  async sweep(): Promise<void> {}
}

class ProcessGroupContainment implements Containment {
  readonly kind = 'process-group';
  constructor(readonly description: string) {}
  openPhase(inNamespace: boolean): PhaseScope {
    return groupScope(this.kind, [], inNamespace);
  }
  /** Nothing to find a lost process group by. */
  async sweep(): Promise<void> {}
}

// ---- what one agent may use ----


export interface AgentLimits {
  processes?: number;
  memoryBytes?: number;
}

function positiveInteger(text: string | undefined): number | undefined {
  return text !== undefined && /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : undefined;
}

export function agentLimitsFromEnv(env: Record<string, string | undefined>): AgentLimits {
  const processes = positiveInteger(env[MAX_PROCESSES_ENV]);
  const memoryBytes = positiveInteger(env[MAX_MEMORY_ENV]);
  return { ...(processes ? { processes } : {}), ...(memoryBytes ? { memoryBytes } : {}) };
}

/** This process's soft limit (`unlimited`: Infinity) from /proc/self/limits. */
function ownRlimit(line: 'Max processes' | 'Max data size'): number {
  const value = new RegExp(`^${line}\\s+(\\S+)`, 'm').exec(fs.readFileSync('/proc/self/limits', 'utf8'))?.[1];
  return value === undefined || value === 'unlimited' ? Number.POSITIVE_INFINITY : Number(value);
}

/**
 * prlimit for each phase, for the limits this process does not have already (a unit's wrapper
 * set them on the agent, which its phases inherit; a sandbox root's agent has none).
 */
export function rlimitPrefix(limits: AgentLimits, own: (line: 'Max processes' | 'Max data size') => number = ownRlimit): string[] {
  const wanted = [
    ...(limits.processes !== undefined && own('Max processes') > limits.processes ? [`--nproc=${limits.processes}:${limits.processes}`] : []),
    ...(limits.memoryBytes !== undefined && own('Max data size') > limits.memoryBytes ? [`--data=${limits.memoryBytes}:${limits.memoryBytes}`] : []),
  ];
  return wanted.length > 0 ? ['prlimit', ...wanted, '--'] : [];
}

/** How a failed fork reads in the shells, Python and node; how memory refused reads. */
const FORK_REFUSED = /fork[^\n]{0,40}Resource temporarily unavailable|Cannot fork|can't fork|\[Errno 11\] Resource temporarily unavailable|spawn[^\n]{0,80}EAGAIN/i;
const MEMORY_REFUSED = /Cannot allocate memory|MemoryError|std::bad_alloc/;
/** Kept from one chunk to the next, so a message split between chunks is still seen. */
const OUTPUT_TAIL = 128;

/** Counter `key` of a cgroup's `<file>.events` (pids.events `max`, memory.events `oom_kill`); 0 without one. */
function cgroupEvent(cgroup: string | undefined, file: string, key: string): number {
  if (!cgroup) return 0;
  try {
    return Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(fs.readFileSync(path.join(cgroup, file), 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function formatBytes(bytes: number): string {
  for (const [unit, size] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2]] as const) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return `${bytes} bytes`;
}

/**
 * Watches one phase for its agent's limits: the output (what a refused fork or allocation
 * prints) and, where the agent's cgroup has the controllers, its pids.events and memory.events.
 */
class LimitWatch {
  private tail = '';
  private forkRefused = false;
  private memoryRefused = false;
  private readonly pidsMaxBefore: number;
  private readonly oomBefore: number;
  constructor(private readonly limits: AgentLimits, private readonly agentCgroup: string | undefined) {
    this.pidsMaxBefore = cgroupEvent(agentCgroup, 'pids.events', 'max');
    this.oomBefore = cgroupEvent(agentCgroup, 'memory.events', 'oom_kill');
  }

  observe(text: string): void {
    const seen = this.tail + text;
    if (FORK_REFUSED.test(seen)) this.forkRefused = true;
    if (MEMORY_REFUSED.test(seen)) this.memoryRefused = true;
    this.tail = seen.slice(-OUTPUT_TAIL);
  }

  note(): string | undefined {
    const notes: string[] = [];
    const pidsHit = cgroupEvent(this.agentCgroup, 'pids.events', 'max') > this.pidsMaxBefore;
    if (this.limits.processes !== undefined && (pidsHit || this.forkRefused)) {
      notes.push(`NOTE: this phase hit its process limit (${this.limits.processes} processes for this agent, the charm's agent-max-processes): ${pidsHit ? 'its cgroup refused a fork' : 'a fork was refused'}`);
    }
    const oomKilled = cgroupEvent(this.agentCgroup, 'memory.events', 'oom_kill') > this.oomBefore;
    if (this.limits.memoryBytes !== undefined && (oomKilled || this.memoryRefused)) {
      const what = oomKilled ? 'a process of this agent was killed for lack of memory' : 'an allocation was refused';
      notes.push(`NOTE: this phase may have hit its memory limit (${formatBytes(this.limits.memoryBytes)} for this agent, the charm's agent-max-memory): ${what}`);
    }
    return notes.length > 0 ? notes.join('\n') : undefined;
  }
}

/** A containment whose phases get the agent's limits (prlimit where needed) and are told when they hit one. */
class LimitedContainment implements Containment {
  constructor(
    private readonly inner: Containment,
    private readonly limits: AgentLimits,
    private readonly prefix: readonly string[],
    private readonly agentCgroup: string | undefined,
  ) {}
  get kind(): ContainmentKind {
    return this.inner.kind;
  }
  get description(): string {
    const bounds = [
      ...(this.limits.processes !== undefined ? [`${this.limits.processes} processes`] : []),
      ...(this.limits.memoryBytes !== undefined ? [`${formatBytes(this.limits.memoryBytes)} of memory`] : []),
    ];
    const how = this.prefix.length > 0 ? 'prlimit on each phase' : 'set on the agent at its start';
    return `${this.inner.description}; limits: ${bounds.join(', ')} (${how})`;
  }
  sweep(): Promise<void> {
    return this.inner.sweep();
  }
  openPhase(inNamespace: boolean): PhaseScope {
    const scope = this.inner.openPhase(inNamespace);
    const watch = new LimitWatch(this.limits, this.agentCgroup);
    return { ...scope, prefix: [...this.prefix, ...scope.prefix], observe: (text) => watch.observe(text), limitNote: () => watch.note() };
  }
}

function withLimits(inner: Containment, env: Record<string, string | undefined>): Containment {
  const limits = agentLimitsFromEnv(env);
  if (limits.processes === undefined && limits.memoryBytes === undefined) return inner;
  const own = ownCgroup();
  return new LimitedContainment(inner, limits, rlimitPrefix(limits), 'dir' in own ? own.dir : undefined);
}

/** The best kind this process can use, bounded by the agent's limits when the charm set any. */
export function chooseContainment(env: Record<string, string | undefined> = process.env): Containment {
  return withLimits(chooseKind(env), env);
}

/** Picks the best kind this process can use (or the one CONTAINMENT_ENV names, if it works). */
function chooseKind(env: Record<string, string | undefined>): Containment {
  const wanted = env[CONTAINMENT_ENV];
  const reasons: string[] = [];
  if (!wanted || wanted === 'cgroup') {
    const cgroup = cgroupUsable();
    if ('dir' in cgroup) return new CgroupContainment(cgroup.dir);
    reasons.push(`no cgroup: ${cgroup.why}`);
  }
  if (!wanted || wanted === 'cgroup' || wanted === 'pid-namespace') {
    const pidns = pidNamespaceUsable();
    if ('ok' in pidns) return new PidNamespaceContainment(`each phase runs in its own PID namespace (${reasons.join('; ') || `${CONTAINMENT_ENV}=${wanted}`}); what it leaves dies with it`);
    reasons.push(`no PID namespace: ${pidns.why}`);
  }
  return new ProcessGroupContainment(`phases run in a process group only (${reasons.join('; ') || `${CONTAINMENT_ENV}=${JSON.stringify(wanted)}`}): a process that leaves its group can outlive its phase`);
}

let chosen: Containment | undefined;
/** The process's containment, chosen at first use (a probe or two, once). */
export function defaultContainment(): Containment {
  chosen ??= chooseContainment();
  return chosen;
}

/** Ends what a killed agent's phase left, from its record; the group kill covers the other kinds. */
export async function endRecordedScope(record: ScopeRecord | undefined, pid: number | undefined): Promise<LeftoverProcess[]> {
  if (record?.cgroup) return endCgroup(record.cgroup);
  if (pid) killQuietly(-pid, 'SIGKILL');
  return [];
}
