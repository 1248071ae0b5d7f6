import { z } from 'zod';
import { ActiveStatus, BlockedStatus, CharmBase, type Framework, type HookName } from '../../src/ops';
import { Context } from '../../src/ops/testing';

/** A charm that records what reached it. */
class RecordingCharm extends CharmBase {
  static seen: string[] = [];
  constructor(framework: Framework) {
    super(framework);
    for (const hook of ['install', 'start', 'stop', 'remove', 'config-changed', 'upgrade-charm', 'update-status', 'leader-elected', 'secret-changed'] as HookName[]) {
      this.observe(hook, (e) => void RecordingCharm.seen.push(e.name));
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
  }
  override async collectUnitStatus() {
    const config = await this.model.getConfig();
    return config['name'] ? new ActiveStatus(`hello ${String(config['name'])}`) : new BlockedStatus('name is not set');
  }
}

/** What the recording charm declares. `times` has no type, so the charm's own schema is what refuses "many". */
const spec = {
  config: { options: { name: { type: 'string' as const } } },
  actions: {
    greet: { params: { name: {}, times: {}, opts: { type: 'object' } } },
    'bad-key': {},
    reserved: {},
    explode: {},
    nope: {},
  },
};

const ctx = new Context((fw) => new RecordingCharm(fw), { charmDir: '/nonexistent', spec });

beforeEach(() => {
  RecordingCharm.seen = [];
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
    ['secret-changed', ctx.on.secretChanged()],
  ])('%s reaches its handler', async (name, event) => {
    await ctx.run(event, {});
    expect(RecordingCharm.seen).toEqual([name]);
  });

  it('sets the status the facts call for, once, at the end of the event', async () => {
    const out = await ctx.run(ctx.on.configChanged(), { config: { name: 'lab' } });
    expect(out.unitStatus).toEqual(new ActiveStatus('hello lab'));
    expect(out.unitStatusHistory).toHaveLength(1);
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
