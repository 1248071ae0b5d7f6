/**
 * A real Prometheus scrapes real agents with the scrape jobs the charm sends over cos-agent:
 * every agent's target is up, and its series carry the labels an operator groups by.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { agentScrapeJobs, type AgentScrapeTarget } from '../../src/charm/cos';
import { DevServer } from '../../src/devserver/server';
import { ECHO_COMMANDS } from '../helpers/agent';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const UNIT = 'testflinger-agent-host/0';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Stops a child with SIGTERM, then SIGKILL if it lingers; bounded either way. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function startAgent(dir: string, serverUrl: string, target: AgentScrapeTarget): ChildProcess {
  const agentDir = path.join(dir, target.name);
  fs.mkdirSync(agentDir, { recursive: true });
  const conf = {
    agent_id: target.agentId,
    server_address: serverUrl,
    job_queues: target.queues,
    polling_interval: 1,
    execution_basedir: path.join(agentDir, 'run'),
    logging_basedir: path.join(agentDir, 'logs'),
    results_basedir: path.join(agentDir, 'results'),
    ...ECHO_COMMANDS,
  };
  fs.writeFileSync(path.join(agentDir, 'agent.conf'), JSON.stringify(conf));
  return spawn(process.execPath, [path.join(repoRoot, 'dist', 'testflinger-agent.js'), '-c', path.join(agentDir, 'agent.conf'), '-p', String(target.port)], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TESTFLINGER_METRICS_HOST: '127.0.0.1', TESTFLINGER_OFFLINE_MARKER_DIR: agentDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

describe('Prometheus scraping the agents with the scrape jobs from cos.ts', () => {
  const children: ChildProcess[] = [];
  const devServer = new DevServer();
  let promUrl = '';
  let targets: AgentScrapeTarget[] = [];

  beforeAll(async () => {
    const dir = tempDir('cos-prom');
    const serverUrl = await devServer.start();
    targets = [
      { name: 'agent-101', agentId: 'agent-101', port: await freePort(), queues: ['rpi4'] },
      { name: 'dev102', agentId: 'agent-102', port: await freePort(), queues: ['x86', 'arm64'] },
    ];
    for (const target of targets) children.push(startAgent(dir, serverUrl, target));

    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const config = { global: { scrape_interval: '1s', scrape_timeout: '1s' }, scrape_configs: agentScrapeJobs(targets, UNIT) };
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify(config));
    const prometheus = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
    children.push(prometheus);
    devServer.submitJob({ job_queue: 'rpi4', test_data: { test_cmds: 'echo hi' } });
  });

  afterAll(async () => {
    for (const child of children.reverse()) await stop(child);
    await devServer.stop();
  });

  async function query(promql: string): Promise<PromSample[]> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; data: { result: PromSample[] } };
    if (body.status !== 'success') throw new Error(`query ${promql}: ${JSON.stringify(body)}`);
    return body.data.result;
  }

  it('has every agent target up', async () => {
    const up = await eventually(async () => {
      const samples = await query('up');
      return samples.length === targets.length && samples.every((s) => s.value[1] === '1') ? samples : undefined;
    }, 'every target up', 60_000, 500);
    expect(up.map((s) => s.metric['agent']).sort()).toEqual(['agent-101', 'dev102']);
  });

  it("labels each agent's series with agent, unit and queues, and keeps the agent's own agent_id", async () => {
    const waiting = await eventually(async () => {
      const samples = await query('testflinger_agent_state{state="waiting"} == 1');
      return samples.length === targets.length ? samples : undefined;
    }, 'both agents waiting', 60_000, 500);
    const labels = waiting.map((s) => ({ agent: s.metric['agent'], agent_id: s.metric['agent_id'], unit: s.metric['unit'], queues: s.metric['queues'] }));
    expect(labels.sort((a, b) => String(a.agent).localeCompare(String(b.agent)))).toEqual([
      { agent: 'agent-101', agent_id: 'agent-101', unit: UNIT, queues: ',rpi4,' },
      { agent: 'dev102', agent_id: 'agent-102', unit: UNIT, queues: ',arm64,x86,' },
    ]);
    expect(waiting.every((s) => s.metric['exported_agent_id'] === undefined)).toBe(true);
  });

  it('sees the job an agent ran in upstream series, and a recent poll', async () => {
    const jobs = await eventually(async () => {
      const samples = await query('jobs_total{queues=~".*,rpi4,.*"}');
      return samples.length === 1 && samples[0]?.value[1] === '1' ? samples : undefined;
    }, 'jobs_total for the rpi4 agent', 60_000, 500);
    expect(jobs[0]?.metric).toMatchObject({ agent_id: 'agent-101', agent: 'agent-101' });
    const phases = await query('count by (test_phase) (phase_duration_seconds_count{agent_id="agent-101"})');
    expect(phases.map((s) => s.metric['test_phase'])).toContain('test');
    const sincePoll = await query('time() - testflinger_agent_last_successful_poll_timestamp_seconds');
    expect(sincePoll).toHaveLength(targets.length);
    for (const sample of sincePoll) expect(Number(sample.value[1])).toBeLessThan(60);
  });
});
