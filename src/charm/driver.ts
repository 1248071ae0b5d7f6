/**
 * How the host is driven, as opposed to where its files are (paths.ts). Two drivers, chosen once
 * when the charm starts: `unit` (a real machine: apt-get, the ubuntu user, Debian's supervisord
 * under systemd) and `sandbox` (AGENT_HOST_ROOT: no packages, no users, the charm's own
 * supervisord). Nothing outside this file asks which one it is. See docs/architecture.md.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Runner } from '../common/exec';
import { writeFileAtomic } from '../common/fsutil';
import type { FileOwner } from '../common/privileges';
import { supervisorLimits } from './limits';
import { ensureUbuntuUser, HOST_PACKAGES, installPackages } from './packages';
import type { HostPaths } from './paths';
import type { TemplateRenderer } from './templates';
import { callOverSocket } from './xmlrpc';

export type DriverKind = 'unit' | 'sandbox';

/** A file's text, or '' when it does not exist (yet). */
export function readIfExists(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** What a program file says about who runs the agent and where its metrics listen. */
export interface ProgramRunAs {
  /** `user=` of the program file; none means supervisord's own user. */
  readonly user?: string;
  /** TESTFLINGER_METRICS_HOST; none means the agent's default (all addresses). */
  readonly metricsHost?: string;
}

/** How supervisord itself is run: its limits, its start and its restart. */
export interface SupervisordDaemon {
  /** Whether the limits on disk are the ones for this many agents (read, not rendered). */
  limitsCurrent(agentCount: number): boolean;
  /** Writes the limits for this many agents; true when the file changed. */
  writeLimits(agentCount: number): boolean;
  /** Starts supervisord; returns once it was asked to (the caller waits for its socket). */
  start(): Promise<void>;
  /** Restarts supervisord, whose programs the caller has stopped already. */
  restart(): Promise<void>;
}

export interface HostDriver {
  readonly kind: DriverKind;
  /** The distribution packages the host needs; `log` says what was done or skipped. */
  installPackages(log: (message: string) => Promise<void>): Promise<void>;
  /** The agent user's ids, for work done as that user (`asUser`); none: the files are ours. */
  agentUser(): Promise<FileOwner | undefined>;
  /** Owner of the refresh token file (root, the agent user's group); none: ours, 0600. */
  tokenOwner(): Promise<FileOwner | undefined>;
  readonly programRunAs: ProgramRunAs;
  readonly supervisord: SupervisordDaemon;
}

export const UNIT_RUN_AS: ProgramRunAs = Object.freeze({ user: 'ubuntu' });
/** A sandbox exposes nothing beyond loopback. */
export const SANDBOX_RUN_AS: ProgramRunAs = Object.freeze({ metricsHost: '127.0.0.1' });

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

/** A real unit: apt-get, useradd, Debian's supervisord with a limits drop-in, systemctl. */
export function unitDriver(paths: HostPaths, run: Runner, renderer: TemplateRenderer): HostDriver {
  // The ids do not change within one event; `id` is asked once.
  let user: Promise<FileOwner> | undefined;
  const agentUser = () => (user ??= ensureUbuntuUser(run));
  return {
    kind: 'unit',
    installPackages: async () => {
      await installPackages(run, HOST_PACKAGES);
      await agentUser();
    },
    agentUser,
    tokenOwner: async () => ({ uid: 0, gid: (await agentUser()).gid }),
    programRunAs: UNIT_RUN_AS,
    supervisord: {
      // supervisord merges [supervisord] from included files: the drop-in sits beside the programs.
      limitsCurrent: (count) => limitsIn(paths.limitsFile, count),
      writeLimits: (count) => writeFileAtomic(paths.limitsFile, limitsFileContent(renderer, count)),
      start: async () => {
        await run('systemctl', ['start', 'supervisor']);
      },
      restart: async () => {
        await run('systemctl', ['restart', 'supervisor']);
      },
    },
  };
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
    installPackages: (log) => log(`sandbox root ${paths.root}: skipping packages (${HOST_PACKAGES.join(', ')}) and the ubuntu user`),
    agentUser: async () => undefined,
    tokenOwner: async () => undefined,
    programRunAs: SANDBOX_RUN_AS,
    supervisord: {
      // The limits live in the sandbox's own supervisord.conf.
      limitsCurrent: (count) => limitsIn(paths.supervisordConf, count),
      writeLimits: (count) => {
        for (const dir of [paths.programDir, paths.supervisorLogDir, path.dirname(paths.supervisorSocket)]) fs.mkdirSync(dir, { recursive: true });
        return writeFileAtomic(paths.supervisordConf, conf(count));
      },
      start,
      restart: async () => {
        await callOverSocket(paths.supervisorSocket, 'supervisor.shutdown');
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

export function createDriver(kind: DriverKind, paths: HostPaths, run: Runner, renderer: TemplateRenderer): HostDriver {
  return kind === 'unit' ? unitDriver(paths, run, renderer) : sandboxDriver(paths, renderer);
}
