import { z } from 'zod';
import { ActiveStatus, BlockedStatus, CharmBase, HookToolBackend, highestPriority, jujuContextFromEnv, MaintenanceStatus, runEvent, WaitingStatus, type Framework, type HookEvent, type HookName } from '../../src/ops';
import { Context } from '../../src/ops/testing';

/** A charm that records what reached it. */
class RecordingCharm extends CharmBase {
  static seen: string[] = [];
  static events: HookEvent[] = [];
  static unit = '';
  constructor(framework: Framework) {
    super(framework);
    RecordingCharm.unit = framework.context.unitName;
    for (const hook of ['install', 'start', 'stop', 'remove', 'config-changed', 'upgrade-charm', 'update-status', 'leader-elected', 'secret-changed'] as HookName[]) {
      this.observe(hook, (e) => {
        RecordingCharm.seen.push(e.name);
        RecordingCharm.events.push(e);
      });
    }
    this.observe('remove', () => {
      throw new Error('disk on fire');
    });
    this.observeAction('greet', z.object({ name: z.string(), times: z.number().int().default(1), opts: z.object({ loud: z.boolean() }).optional() }), async (event) => {
      const greeting = `hello ${event.params.name}`.repeat(event.params.times);
      await event.log('greeting');
      await event.setResults({ greeting: event.params.opts?.loud ? greeting.toUpperCase() : greeting, nested: { count: event.params.times, tags: ['a', 'b'] } });
    });
    this.observeAction('bad-key', z.object({}), (event) => event.setResults({ Bad_Key: 'x' }));
    this.observeAction('reserved', z.object({}), (event) => event.setResults({ out: { stdout: 'x' } }));
    this.observeAction('explode', z.object({}), () => {
      throw new Error('kaboom');
    });
    // Two components of the status: the name's, and the work's.
    this.observeCollectUnitStatus(async (event) => {
      const config = await this.model.getConfig();
      event.addStatus(config['name'] ? new ActiveStatus(`hello ${String(config['name'])}`) : new BlockedStatus('name is not set'));
    });
    this.observeCollectUnitStatus(async (event) => {
      const config = await this.model.getConfig();
      if (config['busy']) event.addStatus(new WaitingStatus('queued'));
      if (config['busy']) event.addStatus(new MaintenanceStatus('busy'));
    });
  }
}

/** A charm with no status component: the status stays as it was. */
class QuietCharm extends CharmBase {}

/** Counts its starts in the stored state, and forgets a key on stop. */
class CountingCharm extends CharmBase {
  constructor(framework: Framework) {
    super(framework);
    this.observe('start', async () => {
      const { stored } = this.framework;
      const starts = Number((await stored.get('starts')) ?? '0') + 1;
      await stored.set({ starts: String(starts), [`start-${starts}`]: 'x'.repeat(3) });
      expect(await stored.get('starts')).toBe(String(starts));
    });
    this.observe('stop', () => this.framework.stored.delete('start-1'));
  }
}

/** What the recording charm declares. `times` has no type, so the charm's own schema is what refuses "many". */
const spec = {
  metadata: { name: 'recorder' },
  config: { options: { name: { type: 'string' as const }, busy: { type: 'boolean' as const } } },
  actions: {
    greet: { params: { name: {}, times: {}, opts: { type: 'object' } } },
    'bad-key': {},
    reserved: {},
    explode: {},
    nope: {},
  },
};

const ctx = new Context((fw) => new RecordingCharm(fw), { charmDir: '/nonexistent', spec });

const secrets = { 'secret:abc123': { password: 'p' } };

beforeEach(() => {
  RecordingCharm.seen = [];
  RecordingCharm.events = [];
});

describe('hook events', () => {
  it.each([
    ['install', ctx.on.install()],
    ['start', ctx.on.start()],
    ['stop', ctx.on.stop()],
    ['config-changed', ctx.on.configChanged()],
    ['upgrade-charm', ctx.on.upgradeCharm()],
    ['update-status', ctx.on.updateStatus()],
    ['leader-elected', ctx.on.leaderElected()],
    ['secret-changed', ctx.on.secretChanged({ id: 'secret:abc123' })],
  ])('%s reaches its handler', async (name, event) => {
    await ctx.run(event, { secrets });
    expect(RecordingCharm.seen).toEqual([name]);
  });

  it('sets the status the facts call for, once, at the end of the event', async () => {
    const out = await ctx.run(ctx.on.configChanged(), { config: { name: 'lab' } });
    expect(out.unitStatus).toEqual(new ActiveStatus('hello lab'));
    expect(out.unitStatusHistory).toHaveLength(1);
  });

  it('sets the most urgent of the statuses its components add, once', async () => {
    const busy = await ctx.run(ctx.on.configChanged(), { config: { name: 'lab', busy: true } });
    expect(busy.unitStatus).toEqual(new MaintenanceStatus('busy'));
    expect(busy.unitStatusHistory).toHaveLength(1);
    const unnamed = await ctx.run(ctx.on.configChanged(), { config: { busy: true } });
    expect(unnamed.unitStatus).toEqual(new BlockedStatus('name is not set'));
  });

  it('ranks statuses as ops does, the first added winning a tie', () => {
    const [active, waiting, maintenance, blocked] = [new ActiveStatus('a'), new WaitingStatus('w'), new MaintenanceStatus('m'), new BlockedStatus('b')];
    expect(highestPriority([active, waiting, maintenance, blocked])).toBe(blocked);
    expect(highestPriority([active, maintenance, waiting])).toBe(maintenance);
    expect(highestPriority([active, waiting])).toBe(waiting);
    expect(highestPriority([new ActiveStatus('first'), new ActiveStatus('second')])?.message).toBe('first');
    expect(highestPriority([])).toBeUndefined();
  });

  it('leaves the status as it was when no component adds one, and the state out is the next state in', async () => {
    const first = await ctx.run(ctx.on.configChanged(), { config: { name: 'lab' }, leader: true, secrets });
    const quiet = new Context((fw) => new QuietCharm(fw), { charmDir: '/nonexistent', spec });
    const next = await quiet.run(quiet.on.updateStatus(), first);
    expect(next.unitStatus).toEqual(new ActiveStatus('hello lab'));
    expect(next.unitStatusHistory).toEqual([]);
    expect(next).toMatchObject({ config: { name: 'lab' }, leader: true, secrets });
  });

  it('keeps stored state on the controller from one run to the next: read once, written through stdin', async () => {
    const counting = new Context((fw) => new CountingCharm(fw), { charmDir: '/nonexistent', spec });
    const first = await counting.run(counting.on.start(), {});
    expect(first.storedState).toEqual({ starts: '1', 'start-1': 'xxx' });
    const second = await counting.run(counting.on.start(), first);
    expect(second.storedState).toEqual({ starts: '2', 'start-1': 'xxx', 'start-2': 'xxx' });
    expect(second.toolCalls).toEqual([
      ['state-get', '--format=json'],
      ['state-set', '--file', '-'],
    ]);
    const stopped = await counting.run(counting.on.stop(), second);
    expect(stopped.storedState).toEqual({ starts: '2', 'start-2': 'xxx' });
  });

  it('secret-changed carries the secret Juju names, and needs one this unit can see', async () => {
    await ctx.run(ctx.on.secretChanged({ id: 'secret:abc123', label: 'db-password', revision: 3 }), { secrets });
    expect(RecordingCharm.events[0]?.secret).toEqual({ id: 'secret:abc123', label: 'db-password', revision: 3 });
    await expect(ctx.run(ctx.on.secretChanged({ id: 'secret:nope' }), { secrets })).rejects.toThrow(/secret secret:nope is not in the state/);
  });

  it('fails secret-changed when Juju names no secret, before any handler runs', async () => {
    const calls: string[][] = [];
    const backend = new HookToolBackend(async (tool, args) => {
      calls.push([tool, ...args]);
      return '';
    });
    const context = jujuContextFromEnv({ JUJU_UNIT_NAME: 'recorder/0', JUJU_DISPATCH_PATH: 'hooks/secret-changed' }, 'x', '/nonexistent');
    expect(await runEvent((fw) => new RecordingCharm(fw), context, backend)).toBe(1);
    expect(RecordingCharm.seen).toEqual([]);
    expect(calls).toContainEqual(expect.arrayContaining([expect.stringMatching(/Juju gave no JUJU_SECRET_ID/)]));
  });

  it('takes the unit from the charm\'s metadata.yaml name, or refuses to guess', async () => {
    await ctx.run(ctx.on.install(), {});
    expect(RecordingCharm.unit).toBe('recorder/0');
    const named = new Context((fw) => new RecordingCharm(fw), { charmDir: '/nonexistent', spec, unitName: 'other/3' });
    await named.run(named.on.install(), {});
    expect(RecordingCharm.unit).toBe('other/3');
    expect(() => new Context((fw) => new QuietCharm(fw), { charmDir: '/nonexistent', spec: { config: spec.config } })).toThrow(/no unit name given, and no metadata.yaml with a name/);
  });

  it('turns an uncaught error into a hook error with the message logged', async () => {
    await expect(ctx.run(ctx.on.remove(), {})).rejects.toThrow(/disk on fire/);
  });
});

describe('actions', () => {
  it('delivers typed params with schema defaults and flattens nested results', async () => {
    const out = await ctx.run(ctx.on.action('greet', { name: 'bob', opts: { loud: true } }), {});
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults).toEqual({ greeting: 'HELLO BOB', 'nested.count': '1', 'nested.tags': 'a,b' });
    expect(out.actionLogs).toEqual(['greeting']);
  });

  it('fails the action when params do not match the schema', async () => {
    const out = await ctx.run(ctx.on.action('greet', { times: 'many' }), {});
    expect(out.actionFailure).toMatch(/invalid parameters for greet: name: Required; times: Expected number/);
    expect(out.exitCode).toBe(0);
  });

  it('refuses result keys that Juju would refuse, before calling action-set', async () => {
    expect((await ctx.run(ctx.on.action('bad-key'), {})).actionFailure).toMatch(/invalid action result key "Bad_Key"/);
    expect((await ctx.run(ctx.on.action('reserved'), {})).actionFailure).toMatch(/"stdout" is reserved/);
  });

  it('reports an uncaught error as the action failure message, with exit 0 so Juju keeps it', async () => {
    const out = await ctx.run(ctx.on.action('explode'), {});
    expect(out.actionFailure).toBe('kaboom');
    expect(out.exitCode).toBe(0);
    expect(out.logs.some((l) => l.level === 'ERROR' && /kaboom/.test(l.message))).toBe(true);
  });

  it('fails an action the charm does not implement', async () => {
    const out = await ctx.run(ctx.on.action('nope'), {});
    expect(out.actionFailure).toBe('action nope is not implemented by this charm');
  });
});
