/**
 * The placement rules (src/charm/placement.ts): where agents go, how few move when units come
 * and go, and when ownership may pass from one unit to the next.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { agentsPlacedOn, EMPTY_PLACEMENT, nextPlacement, placementSummary, targetsFor, type CatalogAgent, type UnitReport } from '../../src/charm/placement';
import { readCatalog } from '../../src/charm/placementpins';
import { tempDir } from '../helpers/tmp';

const unit = (n: number, agents: UnitReport['agents'] = {}, seen = 0): UnitReport => ({ unit: `tf/${n}`, hostname: `host-${n}`, seen, agents });
const agents = (count: number): CatalogAgent[] => Array.from({ length: count }, (_, i) => ({ name: `agent-${String(i).padStart(3, '0')}` }));
const moved = (a: Record<string, string | null>, b: Record<string, string | null>) => Object.keys(a).filter((k) => a[k] !== b[k]);

describe('targets (rendezvous hashing)', () => {
  const catalog = agents(300);
  const three = [unit(0), unit(1), unit(2)];

  it('spreads unpinned agents over the units, and every unit works out the same answer', () => {
    const targets = targetsFor(catalog, three);
    const counts = new Map<string, number>();
    for (const t of Object.values(targets)) counts.set(t as string, (counts.get(t as string) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual(['tf/0', 'tf/1', 'tf/2']);
    for (const count of counts.values()) expect(count).toBeGreaterThan(60);
    expect(targetsFor(catalog, [...three].reverse())).toEqual(targets);
  });

  it('adding a unit moves only agents onto it, about a quarter of them', () => {
    const before = targetsFor(catalog, three);
    const after = targetsFor(catalog, [...three, unit(3)]);
    const changed = moved(before, after);
    expect(changed.every((name) => after[name] === 'tf/3')).toBe(true);
    expect(changed.length).toBeGreaterThan(40);
    expect(changed.length).toBeLessThan(110);
  });

  it('removing a unit moves only its own agents', () => {
    const before = targetsFor(catalog, three);
    const after = targetsFor(catalog, [unit(0), unit(2)]);
    expect(moved(before, after).sort()).toEqual(Object.keys(before).filter((name) => before[name] === 'tf/1').sort());
  });

  it('a pin goes to the unit with that hostname; a pin to a missing host or a bad pin places nowhere; a unit without a hostname is no target', () => {
    const pinned = [{ name: 'serial-1', pin: 'host-2' }, { name: 'usb-1', pin: 'gone-host' }, { name: 'bad-1', pinProblem: 'placement.yaml: host: must be a hostname' }, { name: 'free-1' }];
    const targets = targetsFor(pinned, [unit(0), unit(2), { unit: 'tf/5', hostname: '', seen: 0, agents: {} }]);
    expect(targets).toMatchObject({ 'serial-1': 'tf/2', 'usb-1': null, 'bad-1': null });
    expect(['tf/0', 'tf/2']).toContain(targets['free-1']);
  });
});

describe('ownership hand-over (nextPlacement)', () => {
  const catalog = agents(40);

  it('a first placement owns every agent at once; a quiet round keeps the version', () => {
    const first = nextPlacement(EMPTY_PLACEMENT, catalog, [unit(0)]);
    expect(agentsPlacedOn(first, 'tf/0')).toHaveLength(40);
    expect(first.version).toBe(1);
    expect(nextPlacement(first, catalog, [unit(0, {}, 1)])).toBe(first);
  });

  it('a moved agent passes to its new unit only once the old owner has seen the move and stopped it', () => {
    const running = Object.fromEntries(catalog.map((a) => [a.name, 'running' as const]));
    const v1 = nextPlacement(EMPTY_PLACEMENT, catalog, [unit(0)]);
    // tf/1 joins: agents move to it, still owned by tf/0 (it runs them).
    const v2 = nextPlacement(v1, catalog, [unit(0, running, 1), unit(1)]);
    const moving = Object.keys(v2.agents).filter((n) => v2.agents[n]?.target === 'tf/1');
    expect(moving.length).toBeGreaterThan(5);
    expect(agentsPlacedOn(v2, 'tf/1')).toEqual([]);
    // tf/0 has stopped them but says it acted on v1 only (an older hook): no hand-over.
    const stoppedAll = Object.fromEntries(Object.entries(running).filter(([n]) => !moving.includes(n)));
    expect(agentsPlacedOn(nextPlacement(v2, catalog, [unit(0, stoppedAll, 1), unit(1)]), 'tf/1')).toEqual([]);
    // One agent still in a job: the others pass, it does not.
    const [busy, ...rest] = moving as [string, ...string[]];
    const v3 = nextPlacement(v2, catalog, [unit(0, { ...stoppedAll, [busy]: 'stopping' }, v2.version), unit(1)]);
    expect(agentsPlacedOn(v3, 'tf/1')).toEqual(rest.sort());
    const v4 = nextPlacement(v3, catalog, [unit(0, { ...stoppedAll, [busy]: 'stopped' }, v3.version), unit(1, {}, v3.version)]);
    expect(agentsPlacedOn(v4, 'tf/1')).toEqual(moving.sort());
  });

  it('a departed owner holds nothing; an agent another unit still lists is not handed over', () => {
    const v1 = nextPlacement(EMPTY_PLACEMENT, catalog, [unit(0), unit(1), unit(2)]);
    const onOne = agentsPlacedOn(v1, 'tf/1');
    const v2probe = nextPlacement(v1, catalog, [unit(0, {}, 1), unit(2, {}, 1)]);
    const [listed, ...free] = onOne.filter((n) => v2probe.agents[n]?.target === 'tf/0') as [string, ...string[]];
    // tf/1 has gone; tf/2 (not the target) still lists one of its agents.
    const v2 = nextPlacement(v1, catalog, [unit(0, {}, 1), unit(2, { [listed]: 'stopping' }, 1)]);
    expect(agentsPlacedOn(v2, 'tf/0')).toEqual([...agentsPlacedOn(v1, 'tf/0'), ...free].sort());
    expect(v2.agents[listed]).toMatchObject({ target: 'tf/0', owner: 'tf/1' });
  });

  it('the summary names units, moves and unplaced agents', () => {
    const v1 = nextPlacement(EMPTY_PLACEMENT, [{ name: 'a' }, { name: 'p', pin: 'nowhere' }], [unit(0)]);
    expect(placementSummary(v1)).toEqual({ unplaced: ['p (pinned to nowhere, no unit)'], text: 'placement v1: tf/0: 1; unplaced: p (pinned to nowhere, no unit)' });
  });
});

describe('pins in the config repo (placement.yaml)', () => {
  function repoWith(files: Record<string, string>): string {
    const root = tempDir('pins');
    for (const [rel, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), text);
    }
    return root;
  }

  it('reads host, and names the agent and the key of a bad pin without touching the others', () => {
    const root = repoWith({
      'a/testflinger-agent.conf': 'agent_id: a\n',
      'a/placement.yaml': 'host: lab-2\n',
      'b/testflinger-agent.conf': 'agent_id: b\n',
      'b/placement.yaml': 'host: Lab_2\n',
      'c/testflinger-agent.conf': 'agent_id: c\n',
      'c/placement.yaml': 'host: lab-2\nzone: x\n',
      'd/testflinger-agent.conf': 'agent_id: d\n',
      'not-an-agent/placement.yaml': 'host: lab-2\n',
    });
    fs.symlinkSync('/etc/hostname', path.join(root, 'd', 'placement.yaml'));
    expect(readCatalog(root)).toEqual([
      { name: 'a', pin: 'lab-2' },
      { name: 'b', pinProblem: 'placement.yaml: host: must be a hostname: lowercase letters, digits and hyphens, in dot-separated labels' },
      { name: 'c', pinProblem: 'placement.yaml: "zone": not a key of placement.yaml (only host)' },
      { name: 'd', pinProblem: 'placement.yaml: is a link; it must be a regular file' },
    ]);
  });
});
