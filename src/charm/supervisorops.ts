/**
 * The supervisord calls the operator actions and the health loop need beyond supervisor.ts's
 * (process times, start, stop, log tail), over the same XML-RPC socket. Tests pass an in-memory
 * supervisor that has these methods too; `processControlFor` then uses it.
 */
import type { Host } from './host';
import type { SupervisorControl } from './supervisor';
import { callOverSocket, type RpcValue } from './xmlrpc';

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

export interface ProcessControl {
  /** Every program, or null when supervisord is not answering. */
  processes(): Promise<ProcessInfo[] | null>;
  /** Starts the named programs without waiting for them; returns the refusals, by name. */
  start(names: readonly string[]): Promise<Record<string, string>>;
  /** Stops the named programs and waits (bounded) until they are down; returns the refusals. */
  stop(names: readonly string[]): Promise<Record<string, string>>;
  tailLog(name: string, bytes: number): Promise<LogTail>;
}

/** supervisord's fault codes (supervisor/xmlrpc.py): stopping a stopped program is no failure. */
const FAULT_NOT_RUNNING = 70;
const FAULT_ALREADY_STARTED = 60;
const STOP_WAIT_MS = 30_000;
const DOWN_STATES = new Set(['STOPPED', 'EXITED', 'FATAL']);

type Fault = { faultCode: number; faultString?: string };
const isFault = (answer: RpcValue): answer is Fault => typeof answer === 'object' && !Array.isArray(answer) && 'faultCode' in answer;

export class SocketProcessControl implements ProcessControl {
  constructor(private readonly socketPath: string) {}

  private rpc(method: string, params: RpcValue[] = []): Promise<RpcValue> {
    return callOverSocket(this.socketPath, method, params);
  }

  async processes(): Promise<ProcessInfo[] | null> {
    let infos: RpcValue;
    try {
      infos = await this.rpc('supervisor.getAllProcessInfo');
    } catch (error) {
      if (['ENOENT', 'ECONNREFUSED'].includes((error as NodeJS.ErrnoException).code ?? '')) return null;
      throw error;
    }
    return (infos as Record<string, RpcValue>[]).map((info) => ({
      name: info['group'] === info['name'] ? String(info['name']) : `${info['group']}:${info['name']}`,
      state: String(info['statename']),
      pid: Number(info['pid'] ?? 0),
      start: Number(info['start'] ?? 0),
      now: Number(info['now'] ?? 0),
      exitStatus: Number(info['exitstatus'] ?? 0),
    }));
  }

  /** One multicall for all names; `ignore` lists the faults that mean "already so". */
  private async multicall(method: string, names: readonly string[], extra: RpcValue[], ignore: number): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    const calls = names.map((name) => ({ methodName: method, params: [name, ...extra] }));
    const answers = (await this.rpc('system.multicall', [calls])) as RpcValue[];
    const refused: Record<string, string> = {};
    answers.forEach((answer, i) => {
      if (isFault(answer) && answer.faultCode !== ignore) refused[names[i] as string] = answer.faultString ?? `fault ${answer.faultCode}`;
    });
    return refused;
  }

  start(names: readonly string[]): Promise<Record<string, string>> {
    return this.multicall('supervisor.startProcess', names, [false], FAULT_ALREADY_STARTED);
  }

  /** wait=false for all at once (supervisord's deferred answers would serialise them), then a bounded wait. */
  async stop(names: readonly string[]): Promise<Record<string, string>> {
    const refused = await this.multicall('supervisor.stopProcess', names, [false], FAULT_NOT_RUNNING);
    const wanted = new Set(names.filter((n) => !(n in refused)));
    const deadline = Date.now() + STOP_WAIT_MS;
    const stillUp = async () => ((await this.processes()) ?? []).some((p) => wanted.has(p.name) && !DOWN_STATES.has(p.state));
    while (Date.now() < deadline && (await stillUp())) await new Promise((r) => setTimeout(r, 50));
    return refused;
  }

  async tailLog(name: string, bytes: number): Promise<LogTail> {
    const [text, , overflow] = (await this.rpc('supervisor.tailProcessStdoutLog', [name, 0, bytes])) as [string, number, boolean];
    return { text: String(text), cut: !!overflow };
  }
}

function hasProcessControl(supervisor: SupervisorControl): supervisor is SupervisorControl & ProcessControl {
  const candidate = supervisor as Partial<ProcessControl>;
  return typeof candidate.processes === 'function' && typeof candidate.start === 'function' && typeof candidate.stop === 'function' && typeof candidate.tailLog === 'function';
}

/** The host's supervisor when it has these calls (an in-memory one), else its XML-RPC socket. */
export function processControlFor(host: Host): ProcessControl {
  return hasProcessControl(host.supervisor) ? host.supervisor : new SocketProcessControl(host.paths.supervisorSocket);
}
