/**
 * The charm's own cos-agent data, end to end: a sandboxed host with real agents under a real
 * supervisord relates to cos-agent through dispatch and the emulated relation tools; a real
 * Prometheus fed the scrape jobs the charm published finds every agent up, labelled.
 */
import { DevServer } from '../../src/devserver';
import { labAgentConf } from '../helpers/charm';
import { ConfigRepo } from '../helpers/gitrepo';
import { TestPrometheus } from '../helpers/prometheus';
import { Sandbox } from '../helpers/sandbox';
import { eventually, onCleanup } from '../helpers/tmp';

jest.setTimeout(120_000);

it('publishes scrape jobs on relation-joined that a real Prometheus scrapes: every agent up, with agent, unit and queues', async () => {
  const server = new DevServer();
  await server.start();
  onCleanup(() => server.stop());
  const repo = new ConfigRepo('lab1');
  repo.addAgent('agent-1', labAgentConf('agent-1', { server_address: server.url, job_queues: ['rpi4'] }));
  repo.addAgent('dev2', labAgentConf('agent-2', { server_address: server.url, job_queues: ['x86', 'arm64'] }));
  repo.commit('two agents');
  const sandbox = new Sandbox({ 'config-repo': repo.url, 'config-dir': 'lab1' });
  await sandbox.hook('install');
  await sandbox.hook('config-changed');

  sandbox.unit.update((s) => {
    s.relations.push({ id: 7, endpoint: 'cos-agent', remoteApp: 'grafana-agent', localUnitData: {}, localAppData: {}, remoteAppData: {}, remoteUnitsData: { 'grafana-agent/0': {} } });
  });
  const joined = await sandbox.dispatch('hooks/cos-agent-relation-joined', { relation: { id: 7, remoteUnit: 'grafana-agent/0' } });
  expect(joined.exitCode).toBe(0);
  const bag = sandbox.unit.state().relations[0]?.localUnitData['config'] ?? '{}';
  const jobs = (JSON.parse(bag) as { metrics_scrape_jobs: unknown[] }).metrics_scrape_jobs;
  expect(jobs).toHaveLength(2);

  const prometheus = await new TestPrometheus().start(jobs);
  const up = await eventually(async () => {
    const samples = await prometheus.query('up == 1');
    return samples.length === 2 ? samples : undefined;
  }, 'both agents up in Prometheus', 60_000, 500);
  expect(up.map((s) => s.metric['agent']).sort()).toEqual(['agent-1', 'dev2']);
  const states = await eventually(async () => {
    const samples = await prometheus.query('testflinger_agent_state == 1');
    return samples.length === 2 ? samples : undefined;
  }, 'both agents report a state', 60_000, 500);
  const labels = states.map((s) => [s.metric['agent'], s.metric['agent_id'], s.metric['unit'], s.metric['queues']]).sort();
  expect(labels).toEqual([
    ['agent-1', 'agent-1', 'testflinger-agent-host/0', ',rpi4,'],
    ['dev2', 'agent-2', 'testflinger-agent-host/0', ',arm64,x86,'],
  ]);
});
