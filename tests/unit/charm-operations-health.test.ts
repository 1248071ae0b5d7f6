/** The health loop of update-status through the harness: restarts with a backoff, crash loops, stale agents, the status line. */
import { labRepo, markBusy } from '../helpers/charm';
import { SCRAPE_DEADLINE_MS, SCRAPES_TOTAL_DEADLINE_MS } from '../../src/charm/operations/metrics';
import { fakeMetrics, metricsText, opsHarness, trickleMetrics } from '../helpers/charm-operations';

const NOW = 1_800_000_000;

async function deployed(names: string[], views: Record<string, { state: string; jobId?: string; lastPoll?: number }> = {}, extraConfig: Record<string, unknown> = {}) {
  const h = opsHarness();
  const repo = labRepo(...names);
  const cfg = { 'config-repo': repo.url, 'config-dir': 'lab1', ...extraConfig };
  await h.ctx.run(h.ctx.on.configChanged(), { config: cfg });
  const ports: Record<string, number> = {};
  for (const [name, view] of Object.entries(views)) ports[name] = await fakeMetrics(() => metricsText(name, view));
  h.editState((s) => Object.assign(s.ports, ports));
  h.supervisor.calls.length = 0;
  const updateStatus = () => h.ctx.run(h.ctx.on.updateStatus(), { config: cfg });
  return { h, repo, updateStatus };
}

describe('update-status health loop', () => {
  it('starts an agent supervisord gave up on, then waits out its backoff, and names a crash loop', async () => {
    const { h, updateStatus } = await deployed(['agent-1', 'agent-2'], { 'agent-1': { state: 'waiting', lastPoll: NOW - 1 }, 'agent-2': { state: 'waiting', lastPoll: NOW - 1 } });
    h.supervisor.states.set('agent-2', 'FATAL');
    const before = Date.now();
    const first = await updateStatus();
    expect(h.supervisor.processCalls()).toEqual([['startProcess', 'agent-2']]);
    expect(first.unitStatus?.message).toBe('2 agents: 1 waiting, 1 restarted');
    const entry = h.state().health['agent-2'];
    expect(entry?.restarts).toBe(1);
    expect(entry?.nextTryAt).toBeGreaterThanOrEqual(before + 60_000);
    expect(h.state().restartRequests['agent-2']).toMatch(/start by update-status \(try 1\)$/);

    // It dies again at once: within its backoff it is left alone.
    h.supervisor.states.set('agent-2', 'FATAL');
    await updateStatus();
    expect(h.supervisor.processCalls()).toHaveLength(1);

    // Once the backoff has passed, the second try doubles it, and the status names the loop.
    h.editState((s) => Object.assign(s.health, { 'agent-2': { restarts: 1, nextTryAt: Date.now() - 1 } }));
    const third = await updateStatus();
    expect(h.supervisor.processCalls()).toHaveLength(2);
    expect(h.state().health['agent-2']?.nextTryAt).toBeGreaterThanOrEqual(Date.now() + 119_000 - 5_000);
    expect(third.unitStatus?.name).toBe('blocked');
    expect(third.unitStatus?.message).toMatch(/^crash loop: agent-2 \(2 restarts, next restart in (2m|1m 5\ds) at the earliest\); 2 agents: 1 waiting, 1 restarted$/);
  });

  it('forgets the backoff once the agent has stayed RUNNING for a while', async () => {
    const { h, updateStatus } = await deployed(['agent-1']);
    h.editState((s) => Object.assign(s.health, { 'agent-1': { restarts: 3, nextTryAt: 0 } }));
    h.supervisor.started.set('agent-1', NOW - 60);
    await updateStatus();
    expect(h.state().health['agent-1']?.restarts).toBe(3);
    h.supervisor.started.set('agent-1', NOW - 600);
    await updateStatus();
    expect(h.state().health).toEqual({});
  });

  it('never stops, signals or starts a busy, stopped or backing-off agent', async () => {
    const { h, repo, updateStatus } = await deployed(['agent-1', 'agent-2', 'agent-3'], { 'agent-1': { state: 'test', jobId: 'j', lastPoll: NOW - 3000 } });
    markBusy(repo, 'agent-1');
    h.supervisor.states.set('agent-2', 'STOPPED');
    h.supervisor.states.set('agent-3', 'BACKOFF');
    await updateStatus();
    expect(h.supervisor.calls).toEqual([]);
    // A long job does not poll: not stale.
    expect(h.state().staleAgents).toEqual({});
  });

  it('names a RUNNING agent that has not polled for a few polling intervals as stale, and the status reads as the summary', async () => {
    const { h, updateStatus } = await deployed(['agent-1', 'agent-2', 'agent-3'], {
      'agent-1': { state: 'waiting', lastPoll: NOW - 2 },
      'agent-2': { state: 'test', jobId: 'j1', lastPoll: NOW - 2 },
      'agent-3': { state: 'waiting', lastPoll: NOW - 300 },
    });
    const out = await updateStatus();
    expect(out.unitStatus?.name).toBe('active');
    expect(out.unitStatus?.message).toBe('3 agents: 1 waiting, 1 test, 1 stale; stale: agent-3 (no poll for 5m)');
    expect(h.state().staleAgents).toEqual({ 'agent-3': 300 });
  });

  it('keeps what the agents status adds after its count when the summary stands in for the count', async () => {
    const views = { 'agent-1': { state: 'waiting', lastPoll: NOW - 2 }, 'agent-2': { state: 'test', jobId: 'j1', lastPoll: NOW - 2 } };
    const { updateStatus } = await deployed(['agent-1', 'agent-2'], views, { 'test-sandbox': false });
    const out = await updateStatus();
    expect(out.unitStatus?.name).toBe('active');
    expect(out.unitStatus?.message).toBe('2 agents: 1 waiting, 1 test; test sandbox off');
  });

  it('keeps the status within 200 characters however many agents are in trouble', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `a-very-long-agent-name-for-the-status-line-${i}`);
    const { h, updateStatus } = await deployed(names);
    for (const name of names) h.supervisor.states.set(name, 'FATAL');
    h.editState((s) => {
      for (const name of names) s.health[name] = { restarts: 5, nextTryAt: Date.now() - 1 };
    });
    for (const name of names) h.supervisor.startsAs.set(name, 'FATAL');
    const out = await updateStatus();
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message.length).toBeLessThanOrEqual(200);
    expect(out.unitStatus?.message).toMatch(/^crash loop: a-very-long-agent-name-for-th… \(6 restarts, next restart in 3\dm at the earliest\), .* and 10 more; /);
  });

  it('finishes within a fixed bound when listeners on the agents\' ports answer one byte a second', async () => {
    // More agents than are scraped at once: the per-scrape deadline and the total one both hold.
    const names = Array.from({ length: 20 }, (_, i) => `agent-${i + 1}`);
    const { h, updateStatus } = await deployed(names);
    const ports: Record<string, number> = {};
    for (const name of names) {
      ports[name] = await trickleMetrics();
      h.supervisor.started.set(name, NOW - 5);
    }
    h.editState((s) => Object.assign(s.ports, ports));
    const started = Date.now();
    const out = await updateStatus();
    const took = Date.now() - started;
    // Two rounds of 2 s scrapes; the bound is the total deadline with room for a loaded machine.
    expect(took).toBeLessThan(SCRAPES_TOTAL_DEADLINE_MS + 5 * SCRAPE_DEADLINE_MS);
    expect(out.unitStatus?.message).toBe('20 agents: 20 no metrics');
  }, 60_000);
});
