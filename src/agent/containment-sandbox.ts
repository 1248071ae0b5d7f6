/**
 * The test phase's sandbox, bubblewrap's answer to upstream's `docker run` of a test image: the
 * host read-only, a private /tmp and /proc, a throwaway home with only `~/.ssh` (read-only) in
 * it, the job's run directory writable, the agents' other directories hidden, its own PID
 * namespace, the network shared so it reaches the devices. Nothing is downloaded: it is the
 * host's own root, so it works offline. The job gets no user namespace of its own
 * (`--disable-userns`, bubblewrap 0.8+): the one bwrap makes is the only one, and a job cannot
 * make another in which it would hold every capability.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SANDBOX_PROGRAM_ENV, TEST_SANDBOX_ENV } from '../common/contract';

const DEFAULT_PROGRAM = '/usr/bin/bwrap';

export interface SandboxSettings {
  program: string;
  /** Directories the job must not see (other jobs' and agents' files): each becomes an empty tmpfs. */
  hidden: string[];
  /** Why the sandbox cannot run here; the test phase then fails rather than run bare. */
  unusable?: string;
  /** False where this bwrap predates `--disable-userns` (before 0.8): jobs may then make user namespaces. */
  disableUserns?: boolean;
}

export interface SandboxJob {
  runDir: string;
  home?: string;
  /** A descriptor to read more arguments from (the secrets' `--setenv`s), kept out of argv. */
  argsFd?: number;
}

export function sandboxWanted(env: Record<string, string | undefined>): boolean {
  return ['on', '1', 'true', 'yes'].includes((env[TEST_SANDBOX_ENV] ?? '').toLowerCase());
}

/** The user namespace bwrap makes is the sandbox's last one: nothing inside may make another. */
export const NO_NESTED_USERNS = ['--unshare-user', '--disable-userns'];

/** A sandbox that starts and runs `true`, with `extra` flags: bwrap installed and allowed its namespaces here. */
export function probeSandbox(program: string, extra: readonly string[] = NO_NESTED_USERNS): string | undefined {
  const probe = spawnSync(program, ['--ro-bind', '/', '/', '--proc', '/proc', '--unshare-pid', ...extra, '--die-with-parent', '--', '/bin/true'], { encoding: 'utf8', timeout: 5000 });
  if (probe.error) return `${program}: ${probe.error.message}`;
  if (probe.status !== 0) return `${program} cannot make a sandbox here: ${probe.stderr.trim().split('\n')[0] ?? `exit ${probe.status}`}`;
  return undefined;
}

/** bwrap before 0.8 does not know `--disable-userns`: its sandbox still runs, without that guard, and says so. */
function probeWithFallback(program: string, warn: (message: string) => void): Pick<SandboxSettings, 'unusable' | 'disableUserns'> {
  const problem = probeSandbox(program);
  if (problem === undefined) return { disableUserns: true };
  if (!/Unknown option --disable-userns/.test(problem)) return { unusable: problem, disableUserns: true };
  warn(`${program} has no --disable-userns (bubblewrap 0.8 or later has it): a job in the test sandbox can make user namespaces of its own`);
  const plain = probeSandbox(program, []);
  return { ...(plain ? { unusable: plain } : {}), disableUserns: false };
}

/** Settings from the agent's environment, or undefined when the sandbox is off. */
export function sandboxFromEnv(
  env: Record<string, string | undefined>,
  hidden: readonly string[],
  warn: (message: string) => void = (m) => process.stderr.write(`testflinger-agent: WARNING: ${m}\n`),
): SandboxSettings | undefined {
  if (!sandboxWanted(env)) return undefined;
  const program = env[SANDBOX_PROGRAM_ENV] || DEFAULT_PROGRAM;
  return { program, hidden: [...hidden], ...probeWithFallback(program, warn) };
}

function isRealDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

function depth(p: string): number {
  return path.resolve(p).split('/').length;
}

/** bwrap's argv up to `--`; the command follows it. */
export function sandboxArgv(settings: SandboxSettings, job: SandboxJob): string[] {
  // Shallow first: a tmpfs laid over a deeper one would hide it anyway, never the other way.
  // The run directory's parent always: the agent's bookkeeping of the job lives there.
  const tmpfs = ['/tmp', '/var/tmp', ...settings.hidden, path.dirname(job.runDir), ...(job.home ? [job.home] : [])]
    .filter(isRealDir)
    .map((p) => path.resolve(p))
    .filter((p, i, all) => p !== '/' && all.indexOf(p) === i)
    .sort((a, b) => depth(a) - depth(b));
  const ssh = job.home ? path.join(job.home, '.ssh') : undefined;
  return [
    settings.program,
    '--ro-bind', '/', '/',
    '--dev', '/dev',
    '--proc', '/proc',
    ...tmpfs.flatMap((p) => ['--tmpfs', p]),
    ...(ssh && isRealDir(ssh) ? ['--ro-bind', ssh, ssh] : []),
    '--bind', job.runDir, job.runDir,
    '--chdir', job.runDir,
    '--unshare-pid', '--unshare-ipc', '--unshare-cgroup-try',
    ...(settings.disableUserns === false ? [] : NO_NESTED_USERNS),
    '--die-with-parent', '--new-session',
    ...(job.argsFd !== undefined ? ['--args', String(job.argsFd)] : []),
    '--',
  ];
}
