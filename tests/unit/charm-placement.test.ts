/**
 * One application on several units (the harness, each unit with its own root and in-memory
 * supervisord): agents are placed across units and never run on two. PeerUnits checks that
 * after every hook; the tests say where each agent ends up and how it got there.
 */
import { PeerUnits } from '../helpers/placement-units';
import { labRepo, markBusy } from '../helpers/charm';

const AGENTS = ['agent-1', 'agent-2', 'agent-3', 'agent-4', 'agent-5', 'agent-6'];

function lab(...extra: string[]) {
  const repo = labRepo(...AGENTS, ...extra);
  return { repo, config: { 'config-repo': repo.url, 'config-dir': 'lab1' } };
}

/** Every agent runs on exactly one unit: the units' running lists split the agents. */
async function expectSplit(units: PeerUnits, ns: number[], agents: readonly string[] = AGENTS) {
  const all = (await Promise.all(ns.map((n) => units.running(n)))).flat().sort();
  expect(all).toEqual([...agents].sort());
}

describe('one unit', () => {
  it('with its peer relation and alone, runs every agent; a pin to another host runs here, with a note', async () => {
    const { repo, config } = lab();
    repo.writeFile('lab1/agent-6/placement.yaml', 'host: elsewhere\n');
    repo.commit('pin agent-6');
    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    expect(await units.running(0)).toEqual(AGENTS);
    const out = units.unit(0).last;
    expect(out?.unitStatus?.message).toContain('agent-6 pinned to elsewhere, runs here (one unit)');
    expect(units.unit(0).logs).toContain('placement: agent-6 pinned to elsewhere, runs here (one unit)');
    expect(units.appStatus?.message).toBe('placement v1: testflinger-agent-host/0: 6');
  });
});

describe('units added and removed', () => {
  it('a second unit takes its share; a busy agent moves only after its job', async () => {
    const { repo, config } = lab();
    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    // Which agents unit 1 will get is the hashing's business: ask it by adding a probe first.
    const probe = new PeerUnits(config);
    await probe.add(0, { leader: true });
    await probe.add(1);
    const toOne = await probe.running(1);
    expect(toOne.length).toBeGreaterThan(0);
    const busy = toOne[0] as string;
    const endJob = markBusy(repo, busy);

    await units.add(1);
    expect(await units.running(1)).toEqual(toOne.filter((a) => a !== busy));
    expect(await units.running(0)).toContain(busy);
    expect(units.unit(0).last?.unitStatus?.message).toContain(`moved away, stopping after the job: ${busy}`);
    expect(units.unit(1).last?.unitStatus?.message).toContain(`waiting for testflinger-agent-host/0 to stop ${busy}`);
    // update-status while the job runs: still there.
    await units.hook(0, 'update-status');
    expect(await units.running(0)).toContain(busy);

    endJob();
    await units.hook(0, 'update-status');
    expect(await units.running(1)).toEqual(toOne);
    await expectSplit(units, [0, 1]);
    expect(units.appStatus?.message).toMatch(/^placement v\d+: testflinger-agent-host\/0: \d, testflinger-agent-host\/1: \d$/);
  });

  it('a removed unit: its agents go to the others, and only after it stopped them', async () => {
    const { config } = lab();
    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    await units.add(1);
    await units.add(2);
    await expectSplit(units, [0, 1, 2]);
    const kept = [await units.running(0), await units.running(1)];
    const fromTwo = await units.running(2);
    await units.remove(2);
    await expectSplit(units, [0, 1]);
    // The agents of the units that stay did not move.
    expect(await units.running(0)).toEqual(expect.arrayContaining(kept[0] as string[]));
    expect(await units.running(1)).toEqual(expect.arrayContaining(kept[1] as string[]));
    expect([...(await units.running(0)), ...(await units.running(1))]).toEqual(expect.arrayContaining(fromTwo));
  });

  it('the leader leaves: the next leader places from the data bags, and nothing runs twice', async () => {
    const { config } = lab();
    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    await units.add(1);
    await units.remove(0);
    expect(units.leader).toBe('testflinger-agent-host/1');
    expect(await units.running(1)).toEqual(AGENTS);
  });
});

describe('leader change mid-move', () => {
  it('the new leader keeps the moving agent with its old owner until the job ends, then hands it over', async () => {
    const { repo, config } = lab();
    const probe = new PeerUnits(config);
    await probe.add(0, { leader: true });
    await probe.add(1);
    await probe.add(2);
    const toTwo = await probe.running(2);
    const busy = toTwo[0] as string;

    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    await units.add(1);
    const owner = (await units.running(0)).includes(busy) ? 0 : 1;
    const endJob = markBusy(repo, busy);
    await units.add(2);
    expect(await units.running(owner)).toContain(busy);
    expect(await units.running(2)).not.toContain(busy);

    // Leadership passes to unit 1 mid-move: it reads the placement and the units' reports.
    await units.elect('testflinger-agent-host/1');
    await units.hook(owner, 'update-status');
    expect(await units.running(owner)).toContain(busy);
    expect(await units.running(2)).not.toContain(busy);

    endJob();
    await units.hook(owner, 'update-status');
    expect(await units.running(2)).toEqual(toTwo);
    await expectSplit(units, [0, 1, 2]);
    expect(units.appStatus?.message ?? '').not.toContain('moving');
  });
});

describe('pins', () => {
  it('a pinned agent runs on its host; one pinned to a host with no unit runs nowhere and is unplaced in the leader status', async () => {
    const { repo, config } = lab('serial-1', 'usb-1');
    repo.writeFile('lab1/serial-1/placement.yaml', 'host: host-1\n');
    repo.writeFile('lab1/usb-1/placement.yaml', 'host: host-9\n');
    repo.commit('pins');
    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    expect(await units.running(0)).toContain('usb-1');
    await units.add(1);
    expect(await units.running(1)).toContain('serial-1');
    await expectSplit(units, [0, 1], [...AGENTS, 'serial-1']);
    expect(units.appStatus).toMatchObject({ name: 'blocked', message: expect.stringContaining('unplaced: usb-1 (pinned to host-9, no unit)') });
  });

  it('a bad pin names the agent and the key; the other agents run', async () => {
    const { repo, config } = lab();
    repo.writeFile('lab1/agent-2/placement.yaml', 'hots: host-1\n');
    repo.commit('typo');
    const units = new PeerUnits(config);
    await units.add(0, { leader: true });
    await units.add(1);
    await expectSplit(units, [0, 1], AGENTS.filter((a) => a !== 'agent-2'));
    expect(units.unit(1).last?.unitStatus?.message ?? units.unit(0).last?.unitStatus?.message).toContain('agent-2: placement.yaml: host: Required; "hots": not a key of placement.yaml (only host)');
  });
});

