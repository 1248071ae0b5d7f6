/**
 * The cos-agent relation, event by event: the unit bag carries one scrape target per agent on
 * its metrics port, with the charm's dashboards and rules; quiet hooks leave it alone.
 */
import { relation } from '../../src/ops/testing';
import { charmHarness, labAgentConf, labRepo } from '../helpers/charm';

interface ScrapeJob {
  static_configs: { targets: string[]; labels: Record<string, string> }[];
}
function published(bag: Record<string, string> | undefined) {
  const data = JSON.parse(bag?.['config'] ?? '{}') as { metrics_scrape_jobs?: ScrapeJob[]; dashboards?: string[]; metrics_alert_rules?: { groups: { name: string }[] } };
  const targets = Object.fromEntries((data.metrics_scrape_jobs ?? []).flatMap((j) => j.static_configs.map((c) => [c.labels['agent'], { target: c.targets[0], ...c.labels }])));
  return { data, targets };
}

describe('cos-agent', () => {
  it('joined: one scrape target per agent, on its port, labelled agent, unit and queues; with dashboards and rules', async () => {
    const { ctx } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    const config = { 'config-repo': repo.url, 'config-dir': 'lab1' };
    await ctx.run(ctx.on.configChanged(), { config });
    const rel = relation({ endpoint: 'cos-agent', remoteApp: 'grafana-agent' });
    const out = await ctx.run(ctx.on.relationJoined(rel, { remoteUnit: 'grafana-agent/0' }), { config, relations: [rel] });
    const { data, targets } = published(out.relations[0]?.localUnitData);
    expect(targets).toEqual({
      'agent-1': { target: 'localhost:8200', agent: 'agent-1', unit: 'testflinger-agent-host/0', queues: ',agent-1-queue,' },
      'agent-2': { target: 'localhost:8201', agent: 'agent-2', unit: 'testflinger-agent-host/0', queues: ',agent-2-queue,' },
    });
    expect(data.dashboards).toHaveLength(1);
    expect(data.metrics_alert_rules?.groups.length).toBeGreaterThan(0);
  });

  it('a new agent is published by the config-changed that starts it; an unchanged one does not even list the relations', async () => {
    const { ctx } = charmHarness();
    const repo = labRepo('agent-1');
    const config = { 'config-repo': repo.url, 'config-dir': 'lab1' };
    const rel = relation({ endpoint: 'cos-agent', remoteApp: 'grafana-agent' });
    const first = await ctx.run(ctx.on.configChanged(), { config, relations: [rel] });
    expect(Object.keys(published(first.relations[0]?.localUnitData).targets)).toEqual(['agent-1']);

    const quiet = await ctx.run(ctx.on.configChanged(), { config, relations: first.relations });
    expect(quiet.toolCalls.filter(([tool]) => tool?.startsWith('relation-'))).toEqual([]);

    repo.addAgent('agent-3', labAgentConf('agent-3', { job_queues: ['rpi4', 'arm64'] }));
    repo.commit('one more');
    const grown = await ctx.run(ctx.on.configChanged(), { config, relations: quiet.relations });
    expect(published(grown.relations[0]?.localUnitData).targets['agent-3']).toMatchObject({ target: 'localhost:8201', queues: ',arm64,rpi4,' });
  });

  it('broken: the agents carry on, nothing is asked of supervisord', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1');
    const config = { 'config-repo': repo.url, 'config-dir': 'lab1' };
    const rel = relation({ endpoint: 'cos-agent', remoteApp: 'grafana-agent' });
    await ctx.run(ctx.on.configChanged(), { config, relations: [rel] });
    const calls = supervisor.calls.length;
    const out = await ctx.run(ctx.on.relationBroken(rel), { config, relations: [rel] });
    expect(supervisor.calls.length).toBe(calls);
    expect(out.unitStatus?.name).toBe('active');
  });
});
