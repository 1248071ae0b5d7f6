/**
 * A real Prometheus scrapes real agents with the scrape jobs the charm sends over cos-agent:
 * every agent's target is up, and its series carry the labels an operator groups by.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { agentScrapeJobs, type AgentScrapeTarget } from '../../src/charm/cos';
import { DevServer } from '../../src/devserver/server';
import { ECHO_COMMANDS } from '../helpers/agent';
import { TestPrometheus, stopChild } from '../helpers/prometheus';
import { freePort } from '../helpers/sshd';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const UNIT = 'testflinger-agent-host/0';

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

describe('Prometheus scraping the agents with the scrape jobs from cos.ts', () => {
  const children: ChildProcess[] = [];
  const devServer = new DevServer();
  const prometheus = new TestPrometheus();
  let targets: AgentScrapeTarget[] = [];

  beforeAll(async () => {
    const dir = tempDir('cos-prom');
    const serverUrl = await devServer.start();
    targets = [
      { name: 'agent-101', agentId: 'agent-101', port: await freePort(), queues: ['rpi4'] },
      { name: 'dev102', agentId: 'agent-102', port: await freePort(), queues: ['x86', 'arm64'] },
    ];
    for (const target of targets) children.push(startAgent(dir, serverUrl, target));

    await prometheus.start(agentScrapeJobs(targets, UNIT));
    devServer.submitJob({ job_queue: 'rpi4', test_data: { test_cmds: 'echo hi' } });
  });

  afterAll(async () => {
    await prometheus.stop();
    for (const child of children.reverse()) await stopChild(child);
    await devServer.stop();
  });

  const query = (promql: string) => prometheus.query(promql);

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
