/**
 * Relation hooks end to end: Juju runs `dispatch` with a relation's environment, and a small
 * charm writes its cos-agent unit bag through the emulated relation-set (values on stdin), then
 * reads the remote unit's bag through relation-get.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildSync } from 'esbuild';
import { createEmulatedUnit, dispatchEvent, type EmulatedUnit } from '../../src/hooktools/emulator';
import type { EmulatedRelation } from '../../src/hooktools/state';
import { repoRoot, tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

const UNIT = 'tf-cos/0';

/** A charm that is not the agent host: it only publishes cos-agent data for one agent on joined and changed. */
const CHARM_SOURCE = `
import { CharmBase, main, type Framework } from ${JSON.stringify(path.join(repoRoot, 'src/ops'))};
import { providerUnitBag, providerUnitData, readCosBundle } from ${JSON.stringify(path.join(repoRoot, 'src/charm/cos'))};

class CosCharm extends CharmBase {
  constructor(framework: Framework) {
    super(framework);
    for (const kind of ['joined', 'changed'] as const) {
      this.observeRelation('cos-agent', kind, async (event) => {
        const topology = { model: 'local', modelUuid: '00000000-0000-4000-8000-000000000000', application: 'tf-cos', charmName: 'tf-cos' };
        const agents = [{ name: 'agent-1', agentId: 'agent-1', port: 8200, queues: ['rpi4'] }];
        const data = providerUnitData({ agents, unitName: this.model.context.unitName, topology, bundle: readCosBundle(${JSON.stringify(repoRoot)}) });
        await event.relation.data.localUnit.update(providerUnitBag(data));
        const remote = event.unit ? await event.relation.data.remoteUnit(event.unit).get() : {};
        await event.relation.data.localUnit.update({ 'last-seen': kind + ' ' + event.unit + ' ' + JSON.stringify(remote) });
      });
    }
  }
}
main((framework) => new CosCharm(framework));
`;

function buildCharm(): string {
  const charmDir = tempDir('cos-charm');
  fs.writeFileSync(path.join(charmDir, 'charm.ts'), CHARM_SOURCE);
  buildSync({ entryPoints: [path.join(charmDir, 'charm.ts')], outfile: path.join(charmDir, 'dist', 'charm.js'), bundle: true, platform: 'node', format: 'cjs', logLevel: 'error' });
  fs.writeFileSync(path.join(charmDir, 'metadata.yaml'), 'name: tf-cos\nprovides:\n  cos-agent:\n    interface: cos_agent\n    limit: 1\n');
  fs.writeFileSync(path.join(charmDir, 'dispatch'), `#!/bin/sh\nexec "${process.execPath}" "$(dirname "$0")/dist/charm.js"\n`, { mode: 0o755 });
  return charmDir;
}

const grafanaAgent: EmulatedRelation = {
  id: 4,
  endpoint: 'cos-agent',
  remoteApp: 'grafana-agent',
  localUnitData: {},
  localAppData: {},
  remoteAppData: {},
  remoteUnitsData: { 'grafana-agent/0': {} },
};

describe('cos-agent relation hooks through dispatch', () => {
  let charmDir: string;
  let unit: EmulatedUnit;
  const relationHook = (kind: string) =>
    dispatchEvent(unit, `hooks/cos-agent-relation-${kind}`, { charmDir, unitName: UNIT, relation: { id: 4, remoteUnit: 'grafana-agent/0' } });

  beforeAll(() => {
    charmDir = buildCharm();
    unit = createEmulatedUnit(tempDir('cos-unit'), path.join(repoRoot, 'dist', 'hooktool.js'), charmDir, { relations: [structuredClone(grafanaAgent)] });
  });

  it('joined: the unit bag holds the library model under "config", sent on stdin', async () => {
    const run = await relationHook('joined');
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    const bag = unit.state().relations[0]?.localUnitData ?? {};
    const model = JSON.parse(bag['config'] ?? 'null');
    expect(model.metrics_scrape_jobs).toEqual([
      expect.objectContaining({ static_configs: [{ targets: ['localhost:8200'], labels: { agent: 'agent-1', unit: UNIT, queues: ',rpi4,' } }] }),
    ]);
    expect(model.dashboards).toHaveLength(1);
    expect(bag['last-seen']).toBe('joined grafana-agent/0 {}');
    const sets = unit.state().calls.filter(([tool]) => tool === 'relation-set');
    expect(sets).toContainEqual(['relation-set', '-r', '4', '--file', '-']);
    expect(sets.every((argv) => argv.join(' ').length < 100)).toBe(true);
  });

  it('changed: the charm reads what the remote unit wrote', async () => {
    unit.update((s) => {
      s.relations[0]!.remoteUnitsData['grafana-agent/0'] = { receivers: '[]' };
    });
    expect((await relationHook('changed')).exitCode).toBe(0);
    expect(unit.state().relations[0]?.localUnitData['last-seen']).toBe('changed grafana-agent/0 {"receivers":"[]"}');
    expect(unit.state().hookRelation).toBeNull();
  });
});
