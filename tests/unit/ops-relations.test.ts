import { CharmBase, HookToolBackend, RelationDataAccessError, TooManyRelatedAppsError, jujuContextFromEnv, type Framework, type RelationEvent } from '../../src/ops';
import { Context, InconsistentScenarioError, peerRelation, relation } from '../../src/ops/testing';

/** A charm that publishes a value on every cos-agent event and records what it saw. */
class RelatingCharm extends CharmBase {
  static seen: { event: RelationEvent; remote: Record<string, string> | undefined }[] = [];
  constructor(framework: Framework) {
    super(framework);
    for (const kind of ['created', 'joined', 'changed', 'departed', 'broken'] as const) {
      this.observeRelation('cos-agent', kind, async (event) => {
        const remote = event.unit && event.relation.units.includes(event.unit) ? await event.relation.data.remoteUnit(event.unit).get() : undefined;
        RelatingCharm.seen.push({ event, remote });
        await event.relation.data.localUnit.update({ seen: event.relationKind, stale: '' });
        if (await this.model.isLeader()) await event.relation.data.localApp.update({ leader: 'yes' });
      });
    }
  }
}

const metadata = { name: 'host', provides: { 'cos-agent': { interface: 'cos_agent' } }, requires: { db: { interface: 'pg' } }, peers: { replicas: { interface: 'host-peers' } } };
const ctx = new Context((fw) => new RelatingCharm(fw), { charmDir: '/nonexistent', unitName: 'host/0', spec: { metadata } });

beforeEach(() => {
  RelatingCharm.seen = [];
});

describe('relation events', () => {
  it('carry the relation, the remote app and unit; the charm writes its unit bag through relation-set', async () => {
    const rel = relation({ endpoint: 'cos-agent', remoteApp: 'grafana-agent', localUnitData: { stale: 'x' }, remoteUnitsData: { 'grafana-agent/0': { hello: 'there' } } });
    const out = await ctx.run(ctx.on.relationJoined(rel, { remoteUnit: 'grafana-agent/0' }), { relations: [rel] });
    const [{ event, remote }] = RelatingCharm.seen as [(typeof RelatingCharm.seen)[number]];
    expect(event).toMatchObject({ name: 'cos-agent-relation-joined', endpoint: 'cos-agent', relationKind: 'joined', app: 'grafana-agent', unit: 'grafana-agent/0' });
    expect(event.relation).toMatchObject({ id: rel.id, name: 'cos-agent', app: 'grafana-agent', units: ['grafana-agent/0'] });
    expect(remote).toEqual({ hello: 'there' });
    expect(out.relations[0]?.localUnitData).toEqual({ seen: 'joined' });
    expect(out.toolCalls).toContainEqual(['relation-set', '-r', String(rel.id), '--file', '-']);
  });

  it('departed names the departing unit, and broken still finds its relation', async () => {
    const rel = relation({ endpoint: 'cos-agent', remoteUnitsData: {} });
    await ctx.run(ctx.on.relationDeparted(rel, { remoteUnit: 'remote/3' }), { relations: [rel] });
    await ctx.run(ctx.on.relationBroken(rel), { relations: [rel] });
    expect(RelatingCharm.seen.map((s) => [s.event.relationKind, s.event.departingUnit, s.event.relation.id])).toEqual([
      ['departed', 'remote/3', rel.id],
      ['broken', undefined, rel.id],
    ]);
  });

  it('only the leader writes the app bag', async () => {
    const rel = relation({ endpoint: 'cos-agent' });
    const asLeader = await ctx.run(ctx.on.relationCreated(rel), { relations: [rel], leader: true });
    expect(asLeader.relations[0]?.localAppData).toEqual({ leader: 'yes' });
    const asFollower = await ctx.run(ctx.on.relationCreated(rel), { relations: [rel], leader: false });
    expect(asFollower.relations[0]?.localAppData).toEqual({});
  });
});

describe('the model', () => {
  class Reader extends CharmBase {
    static result: unknown;
    static act: (charm: Reader) => Promise<unknown> = async () => undefined;
    constructor(framework: Framework) {
      super(framework);
      this.observe('update-status', async () => {
        try {
          Reader.result = await Reader.act(this);
        } catch (error) {
          Reader.result = error;
        }
      });
    }
  }
  const readerCtx = new Context((fw) => new Reader(fw), { charmDir: '/nonexistent', unitName: 'host/0', spec: { metadata } });

  it('reads in the next run the relation data the charm wrote in this one (the state out is the next state in)', async () => {
    const rel = relation({ endpoint: 'cos-agent', remoteApp: 'grafana-agent', remoteUnitsData: { 'grafana-agent/0': {} } });
    const joined = await ctx.run(ctx.on.relationJoined(rel, { remoteUnit: 'grafana-agent/0' }), { relations: [rel], leader: true });
    Reader.act = async (charm) => {
      const found = await charm.model.getRelation('cos-agent');
      return [await found?.data.localUnit.get(), await found?.data.localApp.get()];
    };
    const next = await readerCtx.run(readerCtx.on.updateStatus(), joined);
    expect(Reader.result).toEqual([{ seen: 'joined' }, { leader: 'yes' }]);
    expect(next.relations).toEqual(joined.relations);
  });

  const run = async (act: (charm: Reader) => Promise<unknown>, state = {}) => {
    Reader.act = act;
    Reader.result = undefined;
    await readerCtx.run(readerCtx.on.updateStatus(), state);
    return Reader.result;
  };
  const one = relation({ endpoint: 'cos-agent', remoteApp: 'ga', remoteAppData: { a: '1' }, remoteUnitsData: { 'ga/0': { u: '0' } } });
  const two = relation({ endpoint: 'cos-agent', remoteApp: 'gb' });

  it('lists relations by endpoint and finds one by id', async () => {
    expect(await run(async (c) => (await c.model.relations('cos-agent')).map((r) => [r.id, r.app, r.units]), { relations: [one, two] })).toEqual([
      [one.id, 'ga', ['ga/0']],
      [two.id, 'gb', ['gb/0']],
    ]);
    expect(await run(async (c) => (await c.model.getRelation('cos-agent', two.id))?.app, { relations: [one, two] })).toBe('gb');
    expect(await run(async (c) => c.model.getRelation('db'), { relations: [one] })).toBeUndefined();
    expect(await run(async (c) => c.model.getRelation('cos-agent'), { relations: [one, two] })).toBeInstanceOf(TooManyRelatedAppsError);
  });

  it('reads the remote app and unit bags, and refuses to write them', async () => {
    const bags = async (c: Reader) => {
      const rel = (await c.model.getRelation('cos-agent'))!;
      return [await rel.data.remoteApp?.get(), await rel.data.remoteUnit('ga/0').get()];
    };
    expect(await run(bags, { relations: [one] })).toEqual([{ a: '1' }, { u: '0' }]);
    const write = async (c: Reader) => (await c.model.getRelation('cos-agent'))!.data.remoteApp?.update({ x: '1' });
    expect(await run(write, { relations: [one] })).toBeInstanceOf(RelationDataAccessError);
    const stranger = async (c: Reader) => (await c.model.getRelation('cos-agent'))!.data.remoteUnit('ga/9');
    expect(await run(stranger, { relations: [one] })).toBeInstanceOf(RelationDataAccessError);
  });

  it('refuses a non-leader its own app bag, reading or writing, before any tool runs', async () => {
    const read = async (c: Reader) => (await c.model.getRelation('cos-agent'))!.data.localApp.get();
    const write = async (c: Reader) => (await c.model.getRelation('cos-agent'))!.data.localApp.update({ k: 'v' });
    expect(await run(read, { relations: [one], leader: false })).toBeInstanceOf(RelationDataAccessError);
    expect(await run(write, { relations: [one], leader: false })).toBeInstanceOf(RelationDataAccessError);
  });
  it('a peer relation: its remote app is this one, every unit reads the app bag, only the leader writes it', async () => {
    const peers = peerRelation({ endpoint: 'replicas', peersData: { 'host/1': { hostname: 'b' } }, localAppData: { placement: 'v1' } });
    const look = async (c: Reader) => {
      const rel = (await c.model.getRelation('replicas'))!;
      return [rel.isPeer, rel.app, rel.units, await rel.data.localApp.get(), rel.data.remoteApp === rel.data.localApp, await rel.data.remoteUnit('host/1').get()];
    };
    expect(await run(look, { relations: [peers], leader: false })).toEqual([true, 'host', ['host/1'], { placement: 'v1' }, true, { hostname: 'b' }]);
    const write = async (c: Reader) => (await c.model.getRelation('replicas'))!.data.localApp.update({ placement: 'v2' });
    expect(await run(write, { relations: [peers], leader: false })).toBeInstanceOf(RelationDataAccessError);
    expect(await run(write, { relations: [peers], leader: true })).toBeUndefined();
  });
});

describe('the harness checks the scenario against the charm', () => {
  it('refuses an endpoint metadata.yaml does not declare, and a relation event whose relation is not in the state', async () => {
    const typo = relation({ endpoint: 'cos-agnet' });
    await expect(ctx.run(ctx.on.updateStatus(), { relations: [typo] })).rejects.toThrow(/relation endpoint "cos-agnet" is not in metadata.yaml/);
    const absent = relation({ endpoint: 'cos-agent' });
    await expect(ctx.run(ctx.on.relationCreated(absent), {})).rejects.toThrow(InconsistentScenarioError);
  });

  it('refuses a joined event for a unit that is not in the relation', async () => {
    const rel = relation({ endpoint: 'cos-agent' });
    await expect(ctx.run(ctx.on.relationJoined(rel, { remoteUnit: 'remote/7' }), { relations: [rel] })).rejects.toThrow(/remote unit remote\/7 is not in relation/);
  });

  it('refuses config keys and types, and actions and params, that the charm does not declare', async () => {
    const spec = { metadata, config: { options: { port: { type: 'int' as const } } }, actions: { go: { params: { n: { type: 'integer' } }, additionalProperties: false } } };
    const strict = new Context((fw) => new RelatingCharm(fw), { charmDir: '/nonexistent', spec });
    await expect(strict.run(strict.on.updateStatus(), { config: { prot: 1 } })).rejects.toThrow(/config option "prot" is not in config.yaml/);
    await expect(strict.run(strict.on.updateStatus(), { config: { port: '80' } })).rejects.toThrow(/"port" is a int in config.yaml, got "80"/);
    await expect(strict.run(strict.on.action('og'), {})).rejects.toThrow(/action "og" is not in actions.yaml/);
    await expect(strict.run(strict.on.action('go', { n: 1.5 }), {})).rejects.toThrow(/param "n" is a integer/);
    await expect(strict.run(strict.on.action('go', { m: 1 }), {})).rejects.toThrow(/has no param "m"/);
  });
});

describe('relation hook tools are spoken as Juju expects', () => {
  it('asks for JSON, names the relation with -r, and sends values on stdin, never in argv', async () => {
    const calls: { argv: string[]; stdin?: string }[] = [];
    const answers: Record<string, string> = { 'relation-ids': '["cos-agent:3"]\n', 'relation-list': '["ga/0"]\n', 'relation-get': '{"k":"v"}\n' };
    const backend = new HookToolBackend(async (tool, args, stdin) => {
      calls.push({ argv: [tool, ...args], ...(stdin === undefined ? {} : { stdin }) });
      return answers[tool] ?? '';
    });
    expect(await backend.relationIds('cos-agent')).toEqual([3]);
    expect(await backend.relationList(3)).toEqual(['ga/0']);
    expect(await backend.relationGet(3, 'ga', { app: true })).toEqual({ k: 'v' });
    await backend.relationSet(3, { config: 'x'.repeat(300_000) });
    await backend.relationSet(3, {});
    expect(calls.map((c) => c.argv)).toEqual([
      ['relation-ids', 'cos-agent', '--format=json'],
      ['relation-list', '-r', '3', '--format=json'],
      ['relation-get', '-r', '3', '--app', '--format=json', '-', 'ga'],
      ['relation-set', '-r', '3', '--file', '-'],
    ]);
    expect(JSON.parse(calls[3]?.stdin ?? '')).toEqual({ config: 'x'.repeat(300_000) });
  });

  it('reads the relation from Juju environment once', () => {
    const env = { JUJU_UNIT_NAME: 'host/0', JUJU_DISPATCH_PATH: 'hooks/cos-agent-relation-departed', JUJU_RELATION: 'cos-agent', JUJU_RELATION_ID: 'cos-agent:4', JUJU_REMOTE_UNIT: 'ga/1', JUJU_REMOTE_APP: 'ga', JUJU_DEPARTING_UNIT: 'ga/1' };
    expect(jujuContextFromEnv(env, 'x', '/c')).toMatchObject({ relationName: 'cos-agent', relationId: 4, remoteUnit: 'ga/1', remoteApp: 'ga', departingUnit: 'ga/1' });
    expect(jujuContextFromEnv({ JUJU_UNIT_NAME: 'host/0' }, '/c/hooks/install', '/c')).toMatchObject({ relationId: undefined, remoteApp: undefined });
  });
});
