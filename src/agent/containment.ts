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
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

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
}

/** Forces a kind (tests, operators); an unavailable one falls back to the next. */
export const CONTAINMENT_ENV = 'TESTFLINGER_CONTAINMENT';
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

/** Picks the best kind this process can use (or the one CONTAINMENT_ENV names, if it works). */
export function chooseContainment(env: Record<string, string | undefined> = process.env): Containment {
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
