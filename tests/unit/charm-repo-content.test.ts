/**
 * Config-repo content is input from whoever may commit to the repo: it is read bounded, and one
 * bad agent never stops the others from being reconciled.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { charmHarness, programDir } from '../helpers/charm';
import { ConfigRepo, agentConf, git } from '../helpers/gitrepo';

function config(repo: ConfigRepo, extra: Record<string, unknown> = {}) {
  return { 'config-repo': repo.url, 'config-dir': 'lab1', ...extra };
}

function programs(root: string): string[] {
  return fs.readdirSync(programDir(root)).filter((f) => f.endsWith('.conf')).sort();
}

describe('config-repo content', () => {
  it('a conf that is a link (to /dev/zero) is refused by name; the others run', async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1');
    fs.mkdirSync(path.join(repo.dir, 'lab1', 'agent-zero'));
    fs.symlinkSync('/dev/zero', path.join(repo.dir, 'lab1', 'agent-zero', 'testflinger-agent.conf'));
    repo.commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.message).toMatch(/^0 agents running, 1 starting; bad conf: agent-zero/);
    expect(out.logs.some((l) => /"agent-zero": "testflinger-agent.conf is a link/.test(l.message))).toBe(true);
    expect(programs(root)).toEqual(['agent-1.conf']);
  });

  it('a huge conf is refused without being read whole', async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1').addAgent('agent-big', `${agentConf('agent-big')}# ${'x'.repeat(20 * 1024 * 1024)}\n`);
    repo.commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.message).toMatch(/bad conf: agent-big/);
    expect(programs(root)).toEqual(['agent-1.conf']);
  });

  it('a 250-character directory name is one bad agent, not a failed reconcile', async () => {
    const { ctx, root } = charmHarness();
    const long = `agent-${'x'.repeat(244)}`;
    const repo = new ConfigRepo('lab1').addAgent('agent-1').addAgent(long, agentConf('agent-long')).addAgent('agent-2');
    repo.commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toMatch(/^0 agents running, 2 starting; bad conf: agent-x+…/);
    expect(out.unitStatus?.message.length).toBeLessThanOrEqual(200);
    expect(programs(root)).toEqual(['agent-1.conf', 'agent-2.conf']);
  });

  it('a config-dir that is a link out of the checkout is refused', async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1');
    repo.commit();
    fs.symlinkSync('/etc', path.join(repo.dir, 'lab2'));
    repo.commit('link');
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'config-dir': 'lab2' }) });
    expect(out.unitStatus?.message).toMatch(/^config-dir: lab2 is not a plain directory inside the repo/);
    expect(fs.existsSync(programDir(root)) ? programs(root) : []).toEqual([]);
  });

  it('two directories with one agent_id: neither starts, both are named', async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1').addAgent('agent-1b', agentConf('agent-1')).addAgent('agent-2');
    repo.commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.message).toMatch(/^0 agents running, 1 starting; bad conf: agent-1, agent-1b/);
    expect(out.logs.some((l) => /"agent-1b": "agent_id \\"agent-1\\" is also the agent_id of agent-1"/.test(l.message))).toBe(true);
    expect(programs(root)).toEqual(['agent-2.conf']);
  });

  it('a duplicate added later leaves the running agent running and does not start the newcomer', async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1');
    repo.commit();
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    repo.addAgent('agent-copy', agentConf('agent-1')).commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.message).toMatch(/bad conf: agent-1, agent-copy/);
    expect(programs(root)).toEqual(['agent-1.conf']);
  });

  it("an agent named like the charm's limits drop-in cannot replace it", async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1').addAgent('zz-testflinger-limits');
    repo.commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.message).toMatch(/bad conf: zz-testflinger-limits/);
    expect(programs(root)).toEqual(['agent-1.conf']);
  });

  it('names from the repo are quoted in the log, newlines and all', async () => {
    const { ctx } = charmHarness();
    const repo = new ConfigRepo('lab1').addAgent('agent-1').addAgent('agent\nevil');
    repo.commit();
    expect(git(repo.dir, 'ls-files').includes('"lab1/agent\\nevil')).toBe(true);
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const line = out.logs.find((l) => l.message.includes('evil'))?.message ?? '';
    expect(line).toContain('"agent\\nevil"');
    expect(line).not.toContain('\n');
    expect(out.unitStatus?.message).not.toContain('\n');
  });
});
