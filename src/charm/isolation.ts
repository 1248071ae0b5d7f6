/**
 * What a unit needs, beyond one user per agent, for the agents to contain their jobs
 * (docs/isolation.md): the root wrapper that gives each agent a cgroup of its own, supervisord's
 * cgroup delegated to it by systemd, and the test phase's sandbox program (the charm's copy of
 * bwrap, which only agents may run and which an AppArmor profile allows user namespaces), checked
 * to work as an agent's user.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NO_NESTED_USERNS } from '../agent/containment-sandbox';
import { CommandError, type Runner } from '../common/exec';
import { writeFileAtomic } from '../common/fsutil';
import type { HostPaths } from './paths';
import { findOnPath } from './runtime';

export const CONTAINED_WRAPPER = 'tf-cmd-scripts/testflinger-agent-contained';
/** The distribution's bubblewrap, which the charm copies. */
export const SYSTEM_BWRAP = '/usr/bin/bwrap';
/**
 * systemd hands supervisord's cgroup to it (Delegate=) and, from systemd 255 (Ubuntu 24.04), puts
 * supervisord itself in the leaf `supervisord` of it (DelegateSubgroup=): the service's cgroup then
 * holds no process, so the wrapper may enable the pids and memory controllers for the agents'
 * cgroups beside that leaf (cgroup v2's no-internal-processes rule). An older systemd ignores the key,
 * with a warning in its journal, and the agents get their rlimits only.
 */
export const SUPERVISORD_SUBGROUP = 'supervisord';
export const DELEGATION_DROP_IN = [
  "# Managed by the testflinger-agent-host charm: agents make cgroups of their own under supervisord's.",
  '[Service]',
  'Delegate=yes',
  `DelegateSubgroup=${SUPERVISORD_SUBGROUP}`,
  '',
].join('\n');
const SANDBOX_CHECK_TIMEOUT_MS = 10_000;

/** Installs the wrapper from the charm (root's, 0755); true when it changed. */
export function installContainedWrapper(paths: HostPaths, charmDir: string): boolean {
  return writeFileAtomic(paths.containedProgram, fs.readFileSync(path.join(charmDir, CONTAINED_WRAPPER)), 0o755, { owner: { uid: 0, gid: 0 } });
}

/**
 * Copies bwrap to the path the AppArmor profile names, runnable by the agents' group only
 * (0750); copied again whenever the distribution's binary differs (an upgrade). True when it changed.
 */
export function installSandboxProgram(paths: HostPaths, agentsGid: number, source = SYSTEM_BWRAP): boolean {
  if (!fs.existsSync(source)) throw new Error(`${source} is missing (the bubblewrap package)`);
  return writeFileAtomic(paths.sandboxProgram, fs.readFileSync(source), 0o750, { owner: { uid: 0, gid: agentsGid }, dirMode: 0o755 });
}

/**
 * Allows user namespaces to the charm's bwrap alone (Ubuntu 24.04 refuses them to unconfined
 * programs), and to nothing it runs: whatever bwrap execs (the job) moves to the child profile
 * `job`, which may do what an unconfined program may, except make a user namespace, use a
 * capability or mount. bwrap's own --disable-userns says the same from inside the namespace;
 * this holds even where that flag is missing. Written for AppArmor 4 (the `userns` rule).
 */
export function apparmorProfile(paths: HostPaths): string {
  const everyday = ['file rwlkm /{**,},', 'network,', 'unix,', 'signal,', 'ptrace,', 'dbus,', 'mqueue,', 'io_uring,'];
  return [
    '# Managed by the testflinger-agent-host charm (docs/isolation.md, "Ubuntu 24.04 and user namespaces").',
    'abi <abi/4.0>,',
    'include <tunables/global>',
    '',
    `profile testflinger-bwrap ${paths.sandboxProgram} flags=(attach_disconnected,mediate_deleted) {`,
    ...everyday.map((rule) => `  ${rule}`),
    '  capability,',
    '  mount,',
    '  umount,',
    '  pivot_root,',
    '  userns,',
    '  cx /** -> job,',
    '',
    '  profile job flags=(attach_disconnected,mediate_deleted) {',
    ...everyday.map((rule) => `    ${rule.replace('rwlkm', 'rwlkmix')}`),
    '    deny userns,',
    '    deny capability,',
    '    deny mount,',
    '    deny umount,',
    '    deny pivot_root,',
    '    include if exists <local/testflinger-bwrap.job>',
    '  }',
    '',
    '  include if exists <local/testflinger-bwrap>',
    '}',
    '',
  ].join('\n');
}

/**
 * Writes the profile and loads it when it changed or `force`; without apparmor_parser (no
 * AppArmor here) it says so and goes on. A refused load is logged: the sandbox check decides.
 */
export async function loadApparmorProfile(run: Runner, paths: HostPaths, log: (m: string) => Promise<void>, force: boolean): Promise<void> {
  const written = writeFileAtomic(paths.apparmorProfile, apparmorProfile(paths), 0o644, { owner: { uid: 0, gid: 0 } });
  if (!written && !force) return;
  const parser = findOnPath('apparmor_parser', `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`);
  if (!parser) {
    await log(`test-sandbox: no apparmor_parser on this host; ${paths.apparmorProfile} written, not loaded`);
    return;
  }
  try {
    await run(parser, ['-r', paths.apparmorProfile]);
  } catch (error) {
    await log(`test-sandbox: apparmor_parser -r ${paths.apparmorProfile} failed: ${(error as Error).message}`);
  }
}

/**
 * Why the charm's bwrap cannot make a sandbox as `user`, in one line; undefined when it can. A
 * bwrap before 0.8 (no --disable-userns) is checked without it: the agents say what that costs.
 */
export async function sandboxProblem(run: Runner, paths: HostPaths, user: string): Promise<string | undefined> {
  const problem = await sandboxCheck(run, paths, user, NO_NESTED_USERNS);
  return problem !== undefined && /Unknown option --disable-userns/.test(problem) ? sandboxCheck(run, paths, user, []) : problem;
}

async function sandboxCheck(run: Runner, paths: HostPaths, user: string, extra: readonly string[]): Promise<string | undefined> {
  const argv = [`--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', paths.sandboxProgram, '--ro-bind', '/', '/', '--proc', '/proc', '--unshare-pid', ...extra, '--die-with-parent', '--', '/bin/true'];
  try {
    await run('setpriv', argv, { timeoutMs: SANDBOX_CHECK_TIMEOUT_MS });
    return undefined;
  } catch (error) {
    const detail = error instanceof CommandError ? error.stderr || error.stdout || error.message : (error as Error).message;
    return detail.trim().split('\n')[0] || 'no reason given';
  }
}

/** Whether systemd's drop-in for supervisord's cgroup delegation is in place. */
export function delegationCurrent(paths: HostPaths): boolean {
  try {
    return fs.readFileSync(paths.delegationDropIn, 'utf8') === DELEGATION_DROP_IN;
  } catch {
    return false;
  }
}

/** Writes the drop-in and has systemd reread its units; true when it changed (a restart applies it). */
export async function writeDelegation(run: Runner, paths: HostPaths): Promise<boolean> {
  if (!writeFileAtomic(paths.delegationDropIn, DELEGATION_DROP_IN, 0o644, { owner: { uid: 0, gid: 0 }, dirMode: 0o755 })) return false;
  await run('systemctl', ['daemon-reload']);
  return true;
}
