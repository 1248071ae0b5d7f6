/**
 * The charm harness of tests/helpers/charm.ts with an in-memory supervisord that also answers
 * the operations' calls (process times, start, stop, log tail: src/charm/supervisor.ts), and
 * fake agent metrics endpoints on 127.0.0.1.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentHostCharm } from '../../src/charm/charm';
import type { HostDriver } from '../../src/charm/driver';
import type { Host } from '../../src/charm/host';
import { loadHostState, saveHostState, type HostState } from '../../src/charm/state';
import type { LogTail, ProcessInfo, Refusals } from '../../src/charm/supervisor';
import { Context } from '../../src/ops/testing';
import { charmHarness, FakeSupervisor, type CharmHarness } from './charm';
import { onCleanup, repoRoot } from './tmp';

const DOWN = new Set(['STOPPED', 'EXITED', 'FATAL']);

export class OpsFakeSupervisor extends FakeSupervisor {
  /** supervisord's clock, in Unix seconds; tests move it. */
  nowSeconds = 1_800_000_000;
  readonly pids = new Map<string, number>();
  readonly started = new Map<string, number>();
  readonly logs = new Map<string, string>();
  private nextPid = 1000;
  /** The state a start leaves the program in (a crashing agent: FATAL). */
  readonly startsAs = new Map<string, string>();

  override async processes(): Promise<ProcessInfo[] | null> {
    if (!this.running) return null;
    return [...this.states].map(([name, state]) => {
      if (!this.pids.has(name)) this.pids.set(name, this.nextPid++);
      const up = !DOWN.has(state);
      return { name, state, pid: up ? (this.pids.get(name) as number) : 0, start: this.started.get(name) ?? this.nowSeconds - 3600, now: this.nowSeconds, exitStatus: 0 };
    });
  }
  override async start(names: readonly string[]): Promise<Refusals> {
    const refused: Refusals = {};
    for (const name of names) {
      const state = this.states.get(name);
      if (state === undefined) refused[name] = 'BAD_NAME';
      else if (!DOWN.has(state)) continue;
      else {
        this.calls.push(['startProcess', name]);
        this.states.set(name, this.startsAs.get(name) ?? 'RUNNING');
        this.pids.set(name, this.nextPid++);
        this.started.set(name, this.nowSeconds);
      }
    }
    return refused;
  }
  override async stop(names: readonly string[]): Promise<Refusals> {
    for (const name of names) {
      if (!this.states.has(name) || DOWN.has(this.states.get(name) as string)) continue;
      this.calls.push(['stopProcess', name]);
      this.states.set(name, 'STOPPED');
    }
    return {};
  }
  override async tailLog(name: string, bytes: number): Promise<LogTail> {
    const log = this.logs.get(name) ?? '';
    return { text: log.slice(-bytes), cut: log.length > bytes };
  }
  /** The calls made to start or stop programs, as [call, name]. */
  processCalls(): string[][] {
    return this.calls.filter((c) => c[0] === 'startProcess' || c[0] === 'stopProcess');
  }
}

export interface OpsHarness extends CharmHarness {
  supervisor: OpsFakeSupervisor;
  state(): HostState;
  editState(change: (state: HostState) => void): void;
}

/** charmHarness's host and root, with this supervisor in place of its in-memory one. */
/** `driver`: what differs from the sandbox driver (e.g. a unit's state dir per agent). */
export function opsHarness(options: { driver?: Partial<HostDriver> } = {}): OpsHarness {
  const base = charmHarness();
  const supervisor = new OpsFakeSupervisor(base.host.paths);
  const host: Host = { ...base.host, driver: { ...base.host.driver, ...options.driver }, supervisor };
  supervisor.daemon = host.driver.supervisord;
  const paths = host.paths;
  return {
    ...base,
    ctx: new Context((fw) => new AgentHostCharm(fw, host), { charmDir: repoRoot }),
    host,
    supervisor,
    state: () => loadHostState(paths),
    editState: (change) => {
      const state = loadHostState(paths);
      change(state);
      saveHostState(paths, state);
    },
  };
}

/** The text an agent's metrics endpoint serves for this view (the series of src/agent/metrics.ts). */
export function metricsText(agentId: string, view: { state: string; jobId?: string; lastPoll?: number }): string {
  return [
    `testflinger_agent_state{agent_id="${agentId}",state="waiting"} ${view.state === 'waiting' ? 1 : 0}`,
    `testflinger_agent_state{agent_id="${agentId}",state="${view.state}"} 1`,
    ...(view.jobId ? [`testflinger_agent_job_in_progress{agent_id="${agentId}",job_id="${view.jobId}"} 1`] : []),
    ...(view.lastPoll !== undefined ? [`testflinger_agent_last_successful_poll_timestamp_seconds{agent_id="${agentId}"} ${view.lastPoll}`] : []),
  ].join('\n');
}

/** A fake metrics endpoint on 127.0.0.1 (an ephemeral port); `body` is read at each scrape. */
export async function fakeMetrics(body: () => string): Promise<number> {
  const server = http.createServer((_req, res) => res.writeHead(200).end(`${body()}\n`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

export function readText(file: string): string {
  return fs.readFileSync(file, 'utf8');
}

/**
 * A hostile listener on 127.0.0.1 (an ephemeral port): it answers 200 and then one byte a second,
 * for ever, so an idle timeout never fires. Its sockets are destroyed at cleanup.
 */
export async function trickleMetrics(): Promise<number> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('#'), 1000);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  return (server.address() as AddressInfo).port;
}
