/**
 * Placement across units on real supervisords: two, then three sandboxed units of one application,
 * each with its own AGENT_HOST_ROOT, its agents polling one dev server, driven through the real
 * dispatch with the emulated hook tools and the `agent-hosts` peer relation. After every hook,
 * supervisorctl on every unit says no agent has a live process on two of them.
 */
import { rendezvousUnit } from '../../src/charm/placement';
import { DevServer } from '../../src/devserver';
import { labAgentConf, markBusy } from '../helpers/charm';
import { ConfigRepo } from '../helpers/gitrepo';
import { PeerSandboxes } from '../helpers/placement-sandboxes';
import { eventually, tempDir } from '../helpers/tmp';

jest.setTimeout(300_000);

const AGENTS = ['agent-1', 'agent-2', 'agent-3', 'agent-4'];

async function lab(server: DevServer): Promise<{ repo: ConfigRepo; config: Record<string, unknown> }> {
  const repo = new ConfigRepo('lab1');
  const base = tempDir('placement-agents');
  for (const name of AGENTS) repo.addAgent(name, labAgentConf(name, { server_address: server.url, polling_interval: 2 }, `${base}/${name}`));
  repo.writeFile('lab1/agent-4/placement.yaml', 'host: host-0\n');
  repo.commit('the lab');
  return { repo, config: { 'config-repo': repo.url, 'config-dir': 'lab1', 'testflinger-server': server.url } };
}

describe('agents placed across units with real supervisords', () => {
  let server: DevServer;
  beforeAll(async () => {
    server = new DevServer();
    await server.start();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('a unit added while an agent is busy, a leader change mid-move, a third unit, the leader removed: never one agent on two units', async () => {
    const { repo, config } = await lab(server);
    const units = new PeerSandboxes(config);
    await units.add(0, { leader: true });
    expect(await units.running(0)).toEqual(AGENTS);

    // Which unpinned agents unit 1 takes is the hashing's business; one of them is mid-job.
    const toOne = AGENTS.filter((a) => a !== 'agent-4' && rendezvousUnit(a, ['testflinger-agent-host/0', 'testflinger-agent-host/1']) === 'testflinger-agent-host/1');
    expect(toOne.length).toBeGreaterThan(0);
    const busy = toOne[0] as string;
    const endJob = markBusy(repo, busy);
    await units.add(1);
    expect(await units.running(1)).toEqual(toOne.filter((a) => a !== busy));
    expect(await units.running(0)).toContain(busy);
    expect(await units.running(0)).toContain('agent-4');

    // Leadership moves to unit 1 while the busy agent waits on unit 0.
    await units.elect('testflinger-agent-host/1');
    await units.hook(0, 'update-status');
    expect(await units.running(0)).toContain(busy);
    expect(await units.running(1)).not.toContain(busy);

    endJob();
    await units.hook(0, 'update-status');
    expect(await units.running(1)).toEqual(toOne);
    expect(units.appStatus?.message).toMatch(/^placement v\d+: testflinger-agent-host\/0: \d, testflinger-agent-host\/1: \d$/);
    await eventually(async () => (await units.running(1)).length === toOne.length, 'unit 1 runs its agents');

    // A third unit takes its share; then unit 1, the leader, goes: leadership passes to unit 0,
    // and unit 1's agents come to the others only after it stopped them.
    const three = ['testflinger-agent-host/0', 'testflinger-agent-host/1', 'testflinger-agent-host/2'];
    const toTwo = AGENTS.filter((a) => a !== 'agent-4' && rendezvousUnit(a, three) === 'testflinger-agent-host/2');
    await units.add(2);
    expect(await units.running(2)).toEqual(toTwo);
    await units.remove(1);
    expect(units.leader).toBe('testflinger-agent-host/0');
    const left = ['testflinger-agent-host/0', 'testflinger-agent-host/2'];
    expect(await units.running(2)).toEqual(AGENTS.filter((a) => a !== 'agent-4' && rendezvousUnit(a, left) === 'testflinger-agent-host/2'));
    expect([...(await units.running(0)), ...(await units.running(2))].sort()).toEqual(AGENTS);
    expect(await units.running(0)).toContain('agent-4');
    await eventually(() => AGENTS.every((a) => server.agents.get(a)?.['state'] === 'waiting'), 'every agent reports in');
  });
});
