/**
 * supervisord: the program files of the agents, and its XML-RPC interface (over its unix socket)
 * for update, signal, stop and status. How the daemon itself is started, restarted and given its
 * limits is the driver's (driver.ts).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { AGENT_DIR_ENV, LOCK_SCOPE_ENV, OFFLINE_MARKER_DIR_ENV } from '../common/contract';
import type { Runner } from '../common/exec';
import { writeFileAtomic } from '../common/fsutil';
import { sandboxDriver, type AgentRun, type SupervisordDaemon } from './driver';
import { callOverSocket, type RpcValue } from './xmlrpc';
import type { HostPaths } from './paths';
import type { TemplateRenderer } from './templates';

/** First line of every program file the charm writes; files without it are never touched. */
export const MANAGED_MARKER = '; Managed by the testflinger-agent-host charm';
export const PROGRAM_TEMPLATE = 'templates/supervisor-program.conf.hbs';
const SOCKET_WAIT_MS = 15_000;
/** Agents get this long to stop (report a job, exit) before supervisord shuts down anyway. */
const STOP_ALL_WAIT_MS = 60_000;
const ACTIVE_STATES = new Set(['RUNNING', 'STARTING', 'STOPPING', 'BACKOFF']);
/** supervisord's fault codes (supervisor/xmlrpc.py). */
const FAULT_BAD_NAME = 10;
const FAULT_NOT_RUNNING = 70;

export interface ProgramSpec {
  name: string;
  confPath: string;
  agentDir: string;
  metricsPort: number;
  /** Extra environment for the agent, e.g. TESTFLINGER_SERVER. */
  extraEnv: Record<string, string>;
}

export interface ProgramStatus {
  name: string;
  state: string;
  pid?: number;
  description: string;
}

/** supervisord's multicall gives each result bare (not wrapped in a list), or a fault struct. */
function isFault(answer: RpcValue): answer is { faultCode: number; faultString?: string } {
  return typeof answer === 'object' && !Array.isArray(answer) && 'faultCode' in answer;
}

export class SupervisorError extends Error {
  override readonly name = 'SupervisorError';
}

/**
 * A value for `environment=`. supervisord expands `%(name)s` and splits on commas and quotes with
 * its own rules, so a value that needs escaping is refused, never escaped (docs/security.md).
 */
function supervisorValue(key: string, value: string): string {
  if (!/^[A-Za-z0-9._~:/@+=-]*$/.test(value)) throw new SupervisorError(`${key} has characters a program file cannot carry safely`);
  return `"${value}"`;
}

export function renderProgramFile(renderer: TemplateRenderer, paths: HostPaths, spec: ProgramSpec, run: AgentRun): string {
  if (!PROGRAM_NAME.test(spec.name)) throw new SupervisorError('not a safe program name');
  const env: Record<string, string> = {
    ...run.env,
    PATH: [paths.binDir, paths.runtimeBinDir, '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':'),
    [AGENT_DIR_ENV]: spec.agentDir,
    [OFFLINE_MARKER_DIR_ENV]: paths.offlineMarkerDir,
    // One process per agent_id on this host, whatever each conf's logging_basedir says.
    [LOCK_SCOPE_ENV]: paths.root,
    ...spec.extraEnv,
  };
  const content = renderer.render(PROGRAM_TEMPLATE, {
    name: spec.name,
    commandPrefix: run.commandPrefix.map(checkedWord),
    agentProgram: checkedPath(paths.agentProgram),
    confPath: checkedPath(spec.confPath),
    metricsPort: spec.metricsPort,
    tokenFile: checkedPath(paths.tokenFile),
    directory: checkedPath(run.home),
    environment: Object.entries(env)
      .map(([k, v]) => `${checkedEnvName(k)}=${supervisorValue(k, v)}`)
      .join(','),
    user: run.user === undefined ? undefined : checkedWord(run.user),
  });
  verifyProgramFile(content, spec.name);
  return content;
}

const PROGRAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PROGRAM_KEYS = new Set(['command', 'directory', 'autostart', 'autorestart', 'exitcodes', 'startsecs', 'startretries', 'stopsignal', 'stopwaitsecs', 'redirect_stderr', 'stdout_logfile_maxbytes', 'stdout_logfile_backups', 'environment', 'user', 'killasgroup', 'stopasgroup']);

function checkedPath(value: string): string {
  if (!/^\/[A-Za-z0-9._/+-]*$/.test(value)) throw new SupervisorError('a host path has characters a program file cannot carry safely');
  return value;
}

/** One word of `command=` (a path, a user, a cgroup name): supervisord splits it on spaces only. */
function checkedWord(value: string): string {
  if (!/^[A-Za-z0-9_/][A-Za-z0-9._/+-]*$/.test(value)) throw new SupervisorError('a command word has characters a program file cannot carry safely');
  return value;
}

function checkedEnvName(name: string): string {
  if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new SupervisorError('an environment name has characters a program file cannot carry safely');
  return name;
}

/**
 * The rendered file, read back as supervisord's INI reader would see it: one section, ours, and
 * only the keys we write. A file that fails this is never written.
 */
export function verifyProgramFile(content: string, name: string): void {
  const sections: string[] = [];
  for (const line of content.split('\n')) {
    if (line === '' || line.startsWith(';')) continue;
    if (/[\u0000-\u001f\u007f]/.test(line)) throw new SupervisorError('program file would hold a control character');
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      sections.push(section[1] as string);
      continue;
    }
    const key = /^([a-z_]+)=/.exec(line)?.[1];
    if (!key || !PROGRAM_KEYS.has(key)) throw new SupervisorError(`program file would hold an unexpected line`);
  }
  if (sections.length !== 1 || sections[0] !== `program:${name}`) throw new SupervisorError('program file would hold another section');
}

/** Names of the agents whose program files the charm wrote earlier. */
export function managedProgramNames(paths: HostPaths): string[] {
  if (!fs.existsSync(paths.programDir)) return [];
  return fs
    .readdirSync(paths.programDir)
    .filter((f) => f.endsWith('.conf'))
    .filter((f) => fs.readFileSync(path.join(paths.programDir, f), 'utf8').startsWith(MANAGED_MARKER))
    .map((f) => f.slice(0, -'.conf'.length));
}

/**
 * Writes the given program files and deletes managed files of other agents, except those in
 * `keep` (agents kept on their last good file).
 */
export function writeProgramFiles(paths: HostPaths, files: ReadonlyMap<string, string>, keep: ReadonlySet<string> = new Set()): { written: string[]; removed: string[] } {
  const written = [...files].filter(([name, content]) => writeFileAtomic(paths.programFile(name), content, 0o644)).map(([n]) => n);
  const removed = managedProgramNames(paths).filter((name) => !files.has(name) && !keep.has(name));
  for (const name of removed) fs.rmSync(paths.programFile(name), { force: true });
  return { written, removed };
}

export function parseStatus(out: string): ProgramStatus[] {
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [name = '', state = '', ...rest] = line.split(/\s+/);
      const description = rest.join(' ');
      const pid = /pid (\d+)/.exec(description)?.[1];
      return { name, state, description, ...(pid ? { pid: Number(pid) } : {}) };
    })
    .filter((s) => /^[A-Z]+$/.test(s.state));
}

/** What the charm asks of supervisord; tests may pass an in-memory one of the same shape. */
export interface SupervisorControl {
  isRunning(): Promise<boolean>;
  /** Every program's state in one call, or null when supervisord is not answering. */
  readPrograms(): Promise<ProgramStatus[] | null>;
  /**
   * Starts supervisord if it is not running, with limits for this many agents. Reports whether
   * the limits it runs with are now out of date (they apply only when supervisord restarts).
   */
  ensureRunning(agentCount: number): Promise<'already-running' | 'started'>;
  /** Writes the limits for this many agents; true when they changed. */
  writeLimits(agentCount: number): boolean;
  /** Restarts supervisord, and with it every agent: only when none is running a job. */
  restart(): Promise<void>;
  update(): Promise<string>;
  signal(names: readonly string[], signal?: string): Promise<{ signalled: string[]; notRunning: string[] }>;
  status(): Promise<ProgramStatus[]>;
  shutdown(): Promise<void>;
}

export class Supervisor implements SupervisorControl {
  private readonly daemon: SupervisordDaemon;
  /**
   * The host's driver gives the daemon; without one, supervisord is run as in a sandbox (the
   * tests of supervisord itself). The runner is unused since the daemon took over systemctl.
   */
  constructor(
    private readonly paths: HostPaths,
    _run: Runner,
    renderer: TemplateRenderer,
    daemon?: SupervisordDaemon,
  ) {
    this.daemon = daemon ?? sandboxDriver(paths, renderer).supervisord;
  }

  private rpc(method: string, params: RpcValue[] = []): Promise<RpcValue> {
    return callOverSocket(this.paths.supervisorSocket, method, params);
  }

  /** Whether supervisord answers on its socket (checked without starting a Python process). */
  isRunning(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.createConnection(this.paths.supervisorSocket);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  }

  writeLimits(agentCount: number): boolean {
    return this.daemon.writeLimits(agentCount);
  }

  async restart(): Promise<void> {
    await this.stopAllPrograms();
    await this.daemon.restart();
    await this.waitForSocket();
  }

  async ensureRunning(agentCount: number): Promise<'already-running' | 'started'> {
    if (await this.isRunning()) return 'already-running';
    this.daemon.writeLimits(agentCount);
    await this.daemon.start();
    await this.waitForSocket();
    return 'started';
  }

  async readPrograms(): Promise<ProgramStatus[] | null> {
    return (await this.isRunning()) ? this.status() : null;
  }

  private async waitForSocket(): Promise<void> {
    const deadline = Date.now() + SOCKET_WAIT_MS;
    while (Date.now() < deadline) {
      if (await this.isRunning()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new SupervisorError(`supervisord did not answer on ${this.paths.supervisorSocket} within ${SOCKET_WAIT_MS / 1000}s`);
  }

  /**
   * Stops the named programs (one process per group, named as it) all at once: one multicall of
   * `stopProcess(name, wait=false)`, which returns as soon as the signal is sent. Not
   * `stopProcessGroup`: its answer is deferred, and supervisord's multicall waits for each
   * deferred answer before the next call, about a second each, as its own update does. Then
   * waits, bounded, until none of them is running.
   */
  private async stopGroups(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const calls = names.map((name) => ({ methodName: 'supervisor.stopProcess', params: [name, false] as RpcValue[] }));
    const answers = (await this.rpc('system.multicall', [calls])) as RpcValue[];
    // One already stopped (NOT_RUNNING) or unknown (BAD_NAME) is what we want anyway.
    const refused = names.filter((_, i) => {
      const answer = answers[i] as RpcValue;
      return isFault(answer) && answer.faultCode !== FAULT_NOT_RUNNING && answer.faultCode !== FAULT_BAD_NAME;
    });
    if (refused.length > 0) throw new SupervisorError(`stop: ${refused.join(', ')} refused`);
    const wanted = new Set(names);
    const deadline = Date.now() + STOP_ALL_WAIT_MS;
    while (Date.now() < deadline && (await this.status()).some((p) => wanted.has(p.name) && ACTIVE_STATES.has(p.state))) await new Promise((r) => setTimeout(r, 50));
  }

  /**
   * Applies added, changed and removed program files, as supervisorctl's `update` does:
   * untouched programs keep running; changed ones are stopped and started again. The removed and
   * changed ones are stopped all at once first (see stopGroups), then one round trip removes
   * and adds the groups.
   */
  async update(): Promise<string> {
    const [groups] = (await this.rpc('supervisor.reloadConfig')) as [[string[], string[], string[]]];
    const [added, changed, removed] = groups;
    await this.stopGroups([...removed, ...changed]);
    const call = (methodName: string, ...params: RpcValue[]) => ({ methodName, params });
    const calls = [...[...removed, ...changed].map((name) => call('supervisor.removeProcessGroup', name)), ...[...changed, ...added].map((name) => call('supervisor.addProcessGroup', name))];
    if (calls.length > 0) this.checkMulticall('update', calls, (await this.rpc('system.multicall', [calls])) as RpcValue[]);
    return `added [${added}] changed [${changed}] removed [${removed}]`;
  }

  private checkMulticall(what: string, calls: { methodName: string; params: RpcValue[] }[], answers: RpcValue[]): void {
    const problems = answers
      .map((answer, i) => (isFault(answer) ? `${calls[i]?.methodName}(${calls[i]?.params[0]}): ${answer.faultString ?? 'refused'}` : undefined))
      .filter((p): p is string => p !== undefined);
    if (problems.length > 0) throw new SupervisorError(`${what}: ${problems.join('; ')}`);
  }

  /**
   * Sends a signal to the named programs in one round trip. A program that is not running is no
   * failure here (it will start with the new settings anyway); any other refusal is.
   */
  async signal(names: readonly string[], signal = 'USR1'): Promise<{ signalled: string[]; notRunning: string[] }> {
    if (names.length === 0) return { signalled: [], notRunning: [] };
    const calls = names.map((name) => ({ methodName: 'supervisor.signalProcess', params: [name, signal] }));
    const answers = (await this.rpc('system.multicall', [calls])) as RpcValue[];
    const signalled: string[] = [];
    const notRunning: string[] = [];
    const problems: string[] = [];
    answers.forEach((answer, i) => {
      const name = names[i] as string;
      const fault = isFault(answer) ? answer : undefined;
      if (!fault) signalled.push(name);
      else if (fault.faultCode === FAULT_NOT_RUNNING || fault.faultCode === FAULT_BAD_NAME) notRunning.push(name);
      else problems.push(`${name}: ${fault.faultString ?? 'refused'}`);
    });
    if (problems.length > 0) throw new SupervisorError(`signal ${signal}: ${problems.join('; ')}`);
    return { signalled, notRunning };
  }

  async status(): Promise<ProgramStatus[]> {
    const infos = (await this.rpc('supervisor.getAllProcessInfo')) as { name: string; group: string; statename: string; pid: number; description: string }[];
    return infos.map((info) => ({
      name: info.group === info.name ? info.name : `${info.group}:${info.name}`,
      state: info.statename,
      description: info.description,
      ...(info.pid ? { pid: info.pid } : {}),
    }));
  }

  /** Stops the sandbox supervisord (the demo and the tests clean up with it). */
  async shutdown(): Promise<void> {
    if (!(await this.isRunning())) return;
    await this.stopAllPrograms();
    await this.rpc('supervisor.shutdown');
  }

  /**
   * supervisord alone stops one group per turn of its loop, about a second each: stopping them
   * all at once first makes a shutdown or restart take seconds, not minutes.
   */
  private async stopAllPrograms(): Promise<void> {
    await this.rpc('supervisor.stopAllProcesses', [false]);
    const deadline = Date.now() + STOP_ALL_WAIT_MS;
    while (Date.now() < deadline && (await this.status()).some((p) => ACTIVE_STATES.has(p.state))) await new Promise((r) => setTimeout(r, 100));
  }
}
