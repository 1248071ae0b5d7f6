/**
 * What containment and the test sandbox cost per phase: `true` run through the agent's phase
 * runner in each mode this machine supports, against a bare spawn of `/bin/sh -c true` measured
 * in the same run, the modes interleaved so that load hits them alike. Part of `npm run bench`;
 * alone: `npm run bench -- --only=isolation`
 *
 * (as root for the cgroup rows; any user for the PID namespace and sandbox rows). The job rows
 * run real agent processes (dist/testflinger-agent.js: `npm run build` first), one per mode.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { systemClock } from '../src/agent/clock';
import { chooseContainment, processGroupScope, type Containment, type PhaseScope } from '../src/agent/containment';
import { probeSandbox, sandboxArgv } from '../src/agent/containment-sandbox';
import { runPhaseProcess } from '../src/agent/process';
import { DevServer } from '../src/devserver';
import { median, waitUntil } from './measure';

export interface IsolationRow {
  mode: string;
  medianMs: number;
  /** Against the bare spawn of the same run. */
  ratio: number;
}

interface Mode {
  name: string;
  run: () => Promise<unknown>;
}

function bareSpawn(): Promise<unknown> {
  return new Promise((resolve) => spawn('/bin/sh', ['-c', 'true'], { stdio: 'ignore' }).on('close', resolve));
}

function phase(scope: () => PhaseScope, sandbox?: string[]): () => Promise<unknown> {
  return () => runPhaseProcess({ command: 'true', cwd: os.tmpdir(), env: { PATH: '/usr/bin:/bin' }, onOutput: () => undefined, clock: systemClock, scope: scope(), ...(sandbox ? { sandbox } : {}) });
}

function modes(): Mode[] {
  const cwd = os.tmpdir();
  const sandbox = probeSandbox('/usr/bin/bwrap') ? undefined : sandboxArgv({ program: '/usr/bin/bwrap', hidden: [] }, { runDir: cwd });
  const found: Mode[] = [
    { name: 'bare spawn of /bin/sh -c true (baseline)', run: bareSpawn },
    { name: 'phase runner, process group only (before this change)', run: phase(processGroupScope) },
  ];
  const kinds: [string, Containment][] = [
    ['cgroup', chooseContainment({ TESTFLINGER_CONTAINMENT: 'cgroup' })],
    ['pid-namespace', chooseContainment({ TESTFLINGER_CONTAINMENT: 'pid-namespace' })],
  ];
  for (const [wanted, containment] of kinds) {
    if (containment.kind !== wanted) continue;
    found.push({ name: `phase runner, ${wanted}`, run: phase(() => containment.openPhase(false)) });
    if (sandbox) found.push({ name: `phase runner, ${wanted} + test sandbox (bwrap)`, run: phase(() => containment.openPhase(true), sandbox) });
  }
  return found;
}

/** `rounds` runs of each mode, interleaved; the first round is a warm-up and not counted. */
export async function measureIsolation(rounds = 40): Promise<IsolationRow[]> {
  const all = modes();
  const times = all.map(() => [] as number[]);
  for (let round = 0; round <= rounds; round++) {
    for (const [i, mode] of all.entries()) {
      const start = process.hrtime.bigint();
      await mode.run();
      if (round > 0) times[i]?.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  const base = median(times[0] ?? [1]);
  return all.map((mode, i) => ({ mode: mode.name, medianMs: median(times[i] ?? []), ratio: median(times[i] ?? []) / base }));
}

const SEVEN_PHASES = { setup_command: 'true', provision_command: 'true', firmware_update_command: 'true', test_command: 'true', allocate_command: 'true', reserve_command: 'true', cleanup_command: 'true' };
const SEVEN_PHASE_JOB = { provision_data: {}, firmware_update_data: {}, test_data: {}, allocate_data: {}, reserve_data: { timeout: 60 } };
/** Agent processes, one per way of running phases, as the charm's options would set them. */
const JOB_MODES: { name: string; env: Record<string, string> }[] = [
  { name: 'process group only (before this change)', env: { TESTFLINGER_CONTAINMENT: 'process-group' } },
  { name: 'containment (cgroup as root, else PID namespace)', env: {} },
  { name: 'containment + test sandbox', env: { TESTFLINGER_TEST_SANDBOX: 'on' } },
];

function startJobAgent(dir: string, url: string, name: string, env: Record<string, string>): ChildProcess {
  const conf = path.join(dir, `${name}.conf`);
  const base = path.join(dir, name);
  fs.writeFileSync(conf, JSON.stringify({ agent_id: name, server_address: url, job_queues: [`${name}-q`], polling_interval: 0.2, execution_basedir: `${base}/run`, logging_basedir: `${base}/logs`, results_basedir: `${base}/results`, ...SEVEN_PHASES }));
  const agent = path.join(__dirname, '..', 'dist', 'testflinger-agent.js');
  return spawn(process.execPath, [fs.existsSync(agent) ? agent : path.resolve('dist/testflinger-agent.js'), '-c', conf], { stdio: 'ignore', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, TESTFLINGER_AGENT_LOCK_SCOPE: dir, ...env } });
}

/** Per-phase overhead of a 7-phase `true` job, pickup → complete minus the 7 commands run directly, per mode. */
export async function measureJobs(jobs = 5): Promise<IsolationRow[]> {
  const server = new DevServer();
  const url = await server.start();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isolation-bench-'));
  const agents = JOB_MODES.map((m, i) => startJobAgent(dir, url, `bench-${i}`, m.env));
  try {
    await waitUntil('the agents to report in', 20_000, () => JOB_MODES.every((_, i) => server.agents.get(`bench-${i}`)?.['state'] === 'waiting'));
    const direct: number[] = [];
    const perMode = JOB_MODES.map(() => [] as number[]);
    for (let round = 0; round < jobs; round++) {
      const t0 = process.hrtime.bigint();
      for (let p = 0; p < 7; p++) execFileSync('/bin/sh', ['-c', 'true']);
      direct.push(Number(process.hrtime.bigint() - t0) / 1e6);
      for (const [i] of JOB_MODES.entries()) perMode[i]?.push(await pickupToComplete(server, `bench-${i}`));
    }
    const base = median(direct) / 7;
    return JOB_MODES.map((m, i) => {
      const perPhase = (median(perMode[i] ?? []) - median(direct)) / 7;
      return { mode: `7-phase job, per-phase overhead: ${m.name}`, medianMs: perPhase, ratio: perPhase / base };
    });
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function pickupToComplete(server: DevServer, agent: string): Promise<number> {
  const submitted = Date.now();
  const id = server.submitJob({ job_queue: `${agent}-q`, ...SEVEN_PHASE_JOB });
  await waitUntil('job complete', 60_000, () => server.resultView(id)?.['job_state'] === 'complete');
  const pickup = server.requests.find((r) => r.path === '/v1/job' && r.status === 200 && r.at >= submitted && r.agent === agent)?.at ?? submitted;
  return Date.now() - pickup;
}
