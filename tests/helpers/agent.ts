import * as path from 'node:path';
import { Agent, type AgentExit } from '../../src/agent/agent';
import { ServerApi } from '../../src/agent/api';
import { TestflingerClient } from '../../src/agent/client';
import { systemClock, type Clock } from '../../src/agent/clock';
import { parseAgentConfig, type AgentConfig } from '../../src/agent/config';
import { DEFAULT_JOB_TIMING } from '../../src/agent/job';
import { silentLogger, type Logger } from '../../src/agent/logger';
import { AgentMetrics } from '../../src/agent/metrics';
import { DevServer } from '../../src/devserver';
import { eventually, tempDir } from './tmp';

export const ECHO_COMMANDS = {
  setup_command: 'echo setup phase',
  provision_command: 'echo provision phase',
  firmware_update_command: 'echo firmware phase',
  test_command: 'echo test phase',
  allocate_command: 'echo allocate phase',
  reserve_command: 'echo reserve phase',
  cleanup_command: 'echo cleanup phase',
};

export interface RunningAgent {
  agent: Agent;
  config: AgentConfig;
  dir: string;
  metrics: AgentMetrics;
  client: TestflingerClient;
  exit: Promise<AgentExit>;
  stop(): Promise<AgentExit>;
}

/** An agent in this process against the dev server, polling fast, in its own temp dirs. */
export function startAgent(server: DevServer, conf: Record<string, unknown> = {}, options: { log?: Logger; markerDir?: string; programName?: string; clock?: Clock } = {}): RunningAgent {
  const dir = tempDir('agent');
  const config = parseAgentConfig(
    JSON.stringify({
      agent_id: 'agent-1',
      server_address: server.url,
      job_queues: ['q1'],
      polling_interval: 0.05,
      execution_basedir: path.join(dir, 'run'),
      logging_basedir: path.join(dir, 'logs'),
      results_basedir: path.join(dir, 'results'),
      ...ECHO_COMMANDS,
      ...conf,
    }),
    'test.conf',
  );
  const client = new TestflingerClient(config.server_address as string, systemClock, { retry: { attempts: 2, firstDelayMs: 20, maxDelayMs: 50 } });
  const metrics = new AgentMetrics();
  const agent = new Agent({
    api: new ServerApi(client),
    config,
    clock: options.clock ?? systemClock,
    log: options.log ?? silentLogger,
    metrics,
    baseEnv: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    markerDir: options.markerDir ?? path.join(dir, 'markers'),
    ...(options.programName ? { programName: options.programName } : {}),
    timing: { ...DEFAULT_JOB_TIMING, cancelPollMs: 100, allocatePollMs: 100 },
  });
  const shutdown = new AbortController();
  const exit = agent.run(shutdown.signal);
  return {
    agent,
    config,
    dir,
    metrics,
    client,
    exit,
    stop: async () => {
      shutdown.abort();
      return exit;
    },
  };
}

export function jobState(server: DevServer, id: string): unknown {
  return server.resultView(id)?.['job_state'];
}

/** Waits until the agent has come round its loop `turns` more times (counted by the server). */
export async function morePolls(server: DevServer, agentId: string, turns = 2): Promise<void> {
  const target = server.polls(agentId) + turns;
  await eventually(() => server.polls(agentId) >= target, `${turns} more polls from ${agentId}`);
}

/**
 * The invariant of an idle agent: once it has come round its loop again, the server shows it
 * `waiting` (or the hold it is in: an operator's, or offline after a failed recovery) with no
 * job. Call it when the agent has nothing left to do.
 */
export async function expectIdleOnServer(server: DevServer, agentId: string, state = 'waiting'): Promise<void> {
  await morePolls(server, agentId);
  const data = server.agents.get(agentId);
  expect({ state: data?.['state'], job_id: data?.['job_id'] ?? '' }).toEqual({ state, job_id: '' });
}

/**
 * A fresh dev server for every test of the file (handed over through `use`), and a way to start
 * agents against it; both are stopped after each test.
 */
export function devServerPerTest(use: (server: DevServer) => void): (conf?: Record<string, unknown>, options?: Parameters<typeof startAgent>[2]) => RunningAgent {
  let server: DevServer | undefined;
  const running: RunningAgent[] = [];
  beforeEach(async () => {
    server = new DevServer();
    await server.start();
    use(server);
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.stop()));
    await server?.stop();
  });
  return (conf = {}, options = {}) => {
    const r = startAgent(server as DevServer, conf, options);
    running.push(r);
    return r;
  };
}
