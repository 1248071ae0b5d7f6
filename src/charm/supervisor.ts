/**
 * The one client of supervisord: every call the charm makes of it, over its XML-RPC unix socket
 * (xmlrpc.ts), with one reading of its faults and one stop-and-wait. How the daemon itself is
 * started, restarted and given its limits is the driver's (driver.ts, SupervisordDaemon); the
 * program files are programfiles.ts's.
 */
import * as net from 'node:net';
import type { SupervisordDaemon } from './driver';
import { callOverSocket, type RpcValue } from './xmlrpc';

const SOCKET_WAIT_MS = 15_000;
/** Agents get this long to stop (report a job, exit) before supervisord shuts down or rereads anyway. */
const STOP_ALL_WAIT_MS = 60_000;
/** How long an operator's stop waits for the programs to go down. */
const STOP_WAIT_MS = 30_000;
/** States a stopped program has left (supervisor/states.py); the stop-and-wait waits them out. */
const ACTIVE_STATES = new Set(['RUNNING', 'STARTING', 'STOPPING', 'BACKOFF']);

/**
 * supervisord's fault codes (supervisor/xmlrpc.py) that mean "already so" to the charm: starting
 * a started program, stopping a stopped one; an unknown one is gone (stop) or not running (signal).
 */
const FAULT_BAD_NAME = 10;
const FAULT_ALREADY_STARTED = 60;
const FAULT_NOT_RUNNING = 70;
const GONE = [FAULT_NOT_RUNNING, FAULT_BAD_NAME];

export interface ProgramStatus {
  name: string;
  state: string;
  pid?: number;
  description: string;
}

/** One program as `getAllProcessInfo` tells it: times are supervisord's, in Unix seconds. */
export interface ProcessInfo {
  name: string;
  /** RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL, ... */
  state: string;
  pid: number;
  /** When the process last started (0: never). */
  start: number;
  /** supervisord's clock at the time of the answer. */
  now: number;
  exitStatus: number;
}

/** A tail of a program's log: the bytes, and whether more was there than asked for. */
export interface LogTail {
  text: string;
  cut: boolean;
}

/** Refusals by program name: supervisord's fault string. */
export type Refusals = Record<string, string>;

/** What the charm asks of supervisord; the tests' in-memory supervisords implement it too. */
export interface SupervisorControl {
  /** Whether supervisord answers on its socket. */
  isRunning(): Promise<boolean>;
  /** Every program's state in one call, or null when supervisord is not answering. */
  readPrograms(): Promise<ProgramStatus[] | null>;
  /** Starts supervisord if it is not running, with limits for this many agents. */
  ensureRunning(agentCount: number): Promise<'already-running' | 'started'>;
  /** Writes the limits for this many agents; true when they changed (they apply at a restart). */
  writeLimits(agentCount: number): boolean;
  /** Restarts supervisord, and with it every agent: only when none is running a job. */
  restart(): Promise<void>;
  /** Applies added, changed and removed program files; says what it did. */
  update(): Promise<string>;
  /** Signals the named programs; one not running is no failure (named in notRunning). */
  signal(names: readonly string[], signal?: string): Promise<{ signalled: string[]; notRunning: string[] }>;
  status(): Promise<ProgramStatus[]>;
  /** Every program with its times, or null when supervisord is not answering. */
  processes(): Promise<ProcessInfo[] | null>;
  /** Starts the named programs without waiting for them; returns the refusals. */
  start(names: readonly string[]): Promise<Refusals>;
  /** Stops the named programs and waits (bounded) until they are down; returns the refusals. */
  stop(names: readonly string[]): Promise<Refusals>;
  tailLog(name: string, bytes: number): Promise<LogTail>;
  /** Stops every program and then supervisord (the sandbox's, for the demo and the tests). */
  shutdown(): Promise<void>;
}

export class SupervisorError extends Error {
  override readonly name = 'SupervisorError';
}

type Fault = { faultCode: number; faultString?: string };

/** supervisord's multicall gives each result bare (not wrapped in a list), or a fault struct. */
function isFault(answer: RpcValue): answer is Fault {
  return typeof answer === 'object' && !Array.isArray(answer) && 'faultCode' in answer;
}

const faultText = (fault: Fault) => fault.faultString ?? `fault ${fault.faultCode}`;

/** A group of one process is named as the group; any other process as group:name. */
function processInfo(info: Record<string, RpcValue>): ProcessInfo & { description: string } {
  return {
    name: info['group'] === info['name'] ? String(info['name']) : `${info['group']}:${info['name']}`,
    state: String(info['statename']),
    pid: Number(info['pid'] ?? 0),
    start: Number(info['start'] ?? 0),
    now: Number(info['now'] ?? 0),
    exitStatus: Number(info['exitstatus'] ?? 0),
    description: String(info['description'] ?? ''),
  };
}

/** supervisorctl's `status` table (what the sandbox and the unit-mode tests read). */
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

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Supervisor implements SupervisorControl {
  /** The daemon is the driver's (how supervisord is started and restarted on this host). */
  constructor(
    private readonly socketPath: string,
    private readonly daemon: SupervisordDaemon,
  ) {}

  private rpc(method: string, params: RpcValue[] = []): Promise<RpcValue> {
    return callOverSocket(this.socketPath, method, params);
  }

  /**
   * One multicall of `method(name, ...extra)` for each name. The names whose fault is one of
   * `alreadySo` are `already`; any other fault is a refusal, by name.
   */
  private async eachName(method: string, names: readonly string[], extra: RpcValue[], alreadySo: readonly number[]): Promise<{ refused: Refusals; already: string[] }> {
    const refused: Refusals = {};
    const already: string[] = [];
    if (names.length === 0) return { refused, already };
    const calls = names.map((name) => ({ methodName: method, params: [name, ...extra] }));
    const answers = (await this.rpc('system.multicall', [calls])) as RpcValue[];
    answers.forEach((answer, i) => {
      const name = names[i] as string;
      if (!isFault(answer)) return;
      if (alreadySo.includes(answer.faultCode)) already.push(name);
      else refused[name] = faultText(answer);
    });
    return { refused, already };
  }

  /** Whether supervisord answers on its socket (checked without starting a Python process). */
  isRunning(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.createConnection(this.socketPath);
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
    await this.stopAll();
    await this.daemon.restart(this);
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
      await pause(50);
    }
    throw new SupervisorError(`supervisord did not answer on ${this.socketPath} within ${SOCKET_WAIT_MS / 1000}s`);
  }

  private async processInfos(): Promise<(ProcessInfo & { description: string })[]> {
    return ((await this.rpc('supervisor.getAllProcessInfo')) as Record<string, RpcValue>[]).map(processInfo);
  }

  async status(): Promise<ProgramStatus[]> {
    return (await this.processInfos()).map(({ name, state, description, pid }) => ({ name, state, description, ...(pid ? { pid } : {}) }));
  }

  async processes(): Promise<ProcessInfo[] | null> {
    try {
      return (await this.processInfos()).map(({ description: _, ...info }) => info);
    } catch (error) {
      if (['ENOENT', 'ECONNREFUSED'].includes((error as NodeJS.ErrnoException).code ?? '')) return null;
      throw error;
    }
  }

  /**
   * Stops the named programs (one process per group, named as it) all at once: one multicall of
   * `stopProcess(name, wait=false)`, which returns as soon as the signal is sent. Not
   * `stopProcessGroup`: its answer is deferred, and supervisord's multicall waits for each
   * deferred answer before the next call, about a second each, as its own update does. Then
   * waits, bounded, until none of those it did not refuse is active. Returns the refusals.
   */
  private async stopAndWait(names: readonly string[], waitMs: number, alreadySo: readonly number[]): Promise<Refusals> {
    const { refused } = await this.eachName('supervisor.stopProcess', names, [false], alreadySo);
    const wanted = new Set(names.filter((n) => !(n in refused)));
    if (wanted.size > 0) await this.waitDown((name) => wanted.has(name), waitMs);
    return refused;
  }

  /** Waits, bounded, until none of the programs chosen is active. */
  private async waitDown(chosen: (name: string) => boolean, waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && (await this.status()).some((p) => chosen(p.name) && ACTIVE_STATES.has(p.state))) await pause(50);
  }

  /** An operator's stop: a program unknown to supervisord is a refusal. */
  stop(names: readonly string[]): Promise<Refusals> {
    return this.stopAndWait(names, STOP_WAIT_MS, [FAULT_NOT_RUNNING]);
  }

  async start(names: readonly string[]): Promise<Refusals> {
    return (await this.eachName('supervisor.startProcess', names, [false], [FAULT_ALREADY_STARTED])).refused;
  }

  /**
   * Applies added, changed and removed program files, as supervisorctl's `update` does:
   * untouched programs keep running; changed ones are stopped and started again. The removed and
   * changed ones are stopped all at once first (stopAndWait; one unknown to supervisord is gone
   * already, as is one stopped), then one round trip removes and adds the groups.
   */
  async update(): Promise<string> {
    const [groups] = (await this.rpc('supervisor.reloadConfig')) as [[string[], string[], string[]]];
    const [added, changed, removed] = groups;
    const refused = Object.keys(await this.stopAndWait([...removed, ...changed], STOP_ALL_WAIT_MS, GONE));
    if (refused.length > 0) throw new SupervisorError(`stop: ${refused.join(', ')} refused`);
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
   * Sends a signal to the named programs in one round trip. A program that is not running (or
   * unknown) is no failure here (it will start with the new settings anyway); any other refusal is.
   */
  async signal(names: readonly string[], signal = 'USR1'): Promise<{ signalled: string[]; notRunning: string[] }> {
    const { refused, already: notRunning } = await this.eachName('supervisor.signalProcess', names, [signal], GONE);
    const problems = Object.entries(refused).map(([name, why]) => `${name}: ${why}`);
    if (problems.length > 0) throw new SupervisorError(`signal ${signal}: ${problems.join('; ')}`);
    return { signalled: names.filter((n) => !(n in refused) && !notRunning.includes(n)), notRunning };
  }

  async tailLog(name: string, bytes: number): Promise<LogTail> {
    const [text, , overflow] = (await this.rpc('supervisor.tailProcessStdoutLog', [name, 0, bytes])) as [string, number, boolean];
    return { text: String(text), cut: !!overflow };
  }

  async shutdown(): Promise<void> {
    if (!(await this.isRunning())) return;
    await this.stopAll();
    await this.rpc('supervisor.shutdown');
  }

  /**
   * supervisord alone stops one group per turn of its loop, about a second each: stopping them
   * all at once first makes a shutdown or restart take seconds, not minutes.
   */
  private async stopAll(): Promise<void> {
    await this.rpc('supervisor.stopAllProcesses', [false]);
    await this.waitDown(() => true, STOP_ALL_WAIT_MS);
  }
}
