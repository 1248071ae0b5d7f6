/** npm run bench, jobs: 7-phase job overhead on each Node.js line, and live-log latency. */
import { execFileSync } from 'node:child_process';
import { DevServer } from '../src/devserver';
import { NODE_RELEASES, type NodeLine } from '../src/pack/noderuntime';
import { agentConf, asRuntime, node20, shipped, startAgent, tmp, type AgentRuntime } from './agents';
import { median, percentile, waitUntil } from './measure';
import { ms, row, say } from './report';

const SEVEN_PHASES = { setup_command: 'true', provision_command: 'true', firmware_update_command: 'true', test_command: 'true', allocate_command: 'true', reserve_command: 'true', cleanup_command: 'true' };
const SEVEN_PHASE_JOB = { provision_data: {}, firmware_update_data: {}, test_data: {}, allocate_data: {}, reserve_data: { timeout: 60 } };

/** Median pickup → complete of five 7-phase `true` jobs on one agent. */
async function sevenPhaseJobs(server: DevServer, agentName: string): Promise<{ pickupToComplete: number[]; submitToComplete: number[] }> {
  const pickupToComplete: number[] = [];
  const submitToComplete: number[] = [];
  for (let i = 0; i < 5; i++) {
    const submitted = Date.now();
    const id = server.submitJob({ job_queue: `${agentName}-q`, ...SEVEN_PHASE_JOB });
    await waitUntil('job complete', 60_000, () => server.resultView(id)?.['job_state'] === 'complete');
    const pickup = server.requests.find((r) => r.path === '/v1/job' && r.status === 200 && r.at >= submitted)?.at ?? submitted;
    const complete = Date.now();
    const statuses = Object.keys(server.resultView(id) ?? {}).filter((k) => k.endsWith('_status')).length;
    if (statuses !== 7) throw new Error(`bench job ran ${statuses} phases, not 7`);
    pickupToComplete.push(complete - pickup);
    submitToComplete.push(complete - submitted);
  }
  return { pickupToComplete, submitToComplete };
}

/** The same jobs on another runtime (each pinned line, V8's defaults), for the ratios. */
async function jobsOn(name: string, runtime: AgentRuntime, server: DevServer, url: string, dir: string): Promise<number> {
  const agent = startAgent(agentConf(dir, url, name, { ...SEVEN_PHASES, polling_interval: 1 }), runtime);
  try {
    await waitUntil(`${name} to report in`, 20_000, () => server.agents.get(name)?.['state'] === 'waiting');
    return median((await sevenPhaseJobs(server, name)).pickupToComplete);
  } finally {
    agent.kill('SIGTERM');
  }
}

export async function benchJobs(): Promise<void> {
  say('\n# Job overhead and live-log latency (a real agent process, the dev server)');
  const server = new DevServer();
  const url = await server.start();
  const dir = tmp('jobs');
  const agent = startAgent(agentConf(dir, url, 'job-agent', { ...SEVEN_PHASES, polling_interval: 1 }));
  try {
    await waitUntil('the agent to report in', 20_000, () => server.agents.get('job-agent')?.['state'] === 'waiting');
    const direct: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = process.hrtime.bigint();
      for (let p = 0; p < 7; p++) execFileSync('/bin/sh', ['-c', 'true']);
      direct.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const { pickupToComplete, submitToComplete } = await sevenPhaseJobs(server, 'job-agent');
    const overhead = median(pickupToComplete) - median(direct);
    row(`7-phase \`true\` job, pickup → complete (median of 5; ${shipped().label})`, ms(median(pickupToComplete)), `the 7 commands run directly ${ms(median(direct))}`, median(pickupToComplete) / Math.max(1, median(direct)), '≤ 500 ms (upstream 25 s)');
    const on20 = await jobsOn('job-agent-20', node20(), server, url, dir);
    for (const line of Object.keys(NODE_RELEASES) as NodeLine[]) {
      const other = line === '20' ? on20 : await jobsOn(`job-agent-${line}`, asRuntime(line, []), server, url, dir);
      row(`7-phase job, pickup → complete, Node ${line} defaults`, ms(other), `${node20().label} ${ms(on20)}`, other / on20, '—');
    }
    row(`7-phase job, pickup → complete, ${shipped().label}`, ms(median(pickupToComplete)), `${node20().label} ${ms(on20)}`, median(pickupToComplete) / on20, '—');
    row('per-phase overhead', ms(overhead / 7), '—', '—', '—');
    row('7-phase job, submit → complete, polling every 1 s (median of 5)', ms(median(submitToComplete)), 'half a polling interval 500 ms', median(submitToComplete) / 500, '—');

    // Live log: lines stamped when printed; arrival is when the server received their fragment.
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    const logAgent = startAgent(agentConf(dir, url, 'log-agent', { test_command: 'for i in $(seq 1 40); do echo "LAT $(date +%s%3N)"; sleep 0.05; done', polling_interval: 1 }));
    try {
      await waitUntil('the log agent to report in', 20_000, () => server.agents.get('log-agent')?.['state'] === 'waiting');
      const id = server.submitJob({ job_queue: 'log-agent-q', test_data: {} });
      await waitUntil('log job complete', 60_000, () => server.resultView(id)?.['job_state'] === 'complete');
      const latencies = server.fragments(id).flatMap((f) => [...f.log_data.matchAll(/^LAT (\d+)$/gm)].map((m) => f.receivedAt - Number(m[1])));
      if (latencies.length !== 40) throw new Error(`saw ${latencies.length} of 40 lines`);
      row('live-log latency p50 (40 lines, 50 ms apart)', ms(percentile(latencies, 50)), 'upstream up to 10 s (fixed poll)', percentile(latencies, 50) / 10_000, '< 500 ms');
      row('live-log latency p95', ms(percentile(latencies, 95)), '—', '—', '—');
    } finally {
      logAgent.kill('SIGTERM');
    }
  } finally {
    agent.kill('SIGTERM');
    await server.stop();
  }
}
