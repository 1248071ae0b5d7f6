/**
 * The operator actions (agent-status, set-offline, set-online, restart-agents, agent-logs), one
 * event at a time through the harness, over a temp root, an in-memory supervisord and fake
 * metrics endpoints on 127.0.0.1.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { b64, labAgentConf, labRepo, markBusy, sshKeyPair } from '../helpers/charm';
import { fakeMetrics, metricsText, opsHarness, readText, type OpsHarness } from '../helpers/charm-operations';
import { tempDir } from '../helpers/tmp';
import { agentConf, ConfigRepo } from '../helpers/gitrepo';

function config(repo: ConfigRepo, extra: Record<string, unknown> = {}) {
  return { 'config-repo': repo.url, 'config-dir': 'lab1', ...extra };
}

const marker = (h: OpsHarness, name: string) => path.join(h.root, 'tmp', `TESTFLINGER-DEVICE-OFFLINE-${name}`);

/** A deployed host whose agents serve these metrics views (agents not listed serve none). */
async function deployed(names: string[], views: Record<string, { state: string; jobId?: string; lastPoll?: number }> = {}) {
  const h = opsHarness();
  const repo = labRepo(...names);
  await h.ctx.run(h.ctx.on.configChanged(), { config: config(repo) });
  const ports: Record<string, number> = {};
  for (const [name, view] of Object.entries(views)) ports[name] = await fakeMetrics(() => metricsText(name, view));
  h.editState((s) => Object.assign(s.ports, ports));
  fs.mkdirSync(path.join(h.root, 'tmp'), { recursive: true });
  const run = (action: string, params: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => h.ctx.run(h.ctx.on.action(action, params), { config: config(repo, extra) });
  return { h, repo, run, ports };
}

describe('an agent whose conf names no basedirs, where each agent has its own state dir (as on a unit)', () => {
  it('is busy while a job runs in <state dir>/run: agent-status says so and restart-agents mode=now refuses it', async () => {
    const stateDirs = tempDir('srv');
    const h = opsHarness({ driver: { agentStateDir: (agent) => path.join(stateDirs, agent) } });
    const repo = new ConfigRepo('lab1');
    repo.addAgent('agent-1', agentConf('agent-1'));
    repo.commit('initial');
    const run = (event: ReturnType<typeof h.ctx.on.configChanged>) => h.ctx.run(event, { config: config(repo) });
    await run(h.ctx.on.configChanged());
    // Where the agent keeps a job's bookkeeping: its own state dir, not upstream's /tmp/testflinger.
    fs.mkdirSync(path.join(stateDirs, 'agent-1', 'run', '.job-1.agent'), { recursive: true });
    const status = await run(h.ctx.on.action('agent-status', {}));
    expect(status.actionResults['agents.agent-1.busy']).toBe('yes');
    const restart = await run(h.ctx.on.action('restart-agents', { mode: 'now' }));
    expect(restart.actionResults).toMatchObject({ restarted: 'none', 'refused-busy': 'agent-1 (running a job; force=true stops it)' });
  });
});

describe('agent-status', () => {
  it("shows each agent's supervisor state, pid, uptime, own state, job, last poll, marker, port, and a summary line", async () => {
    const { h, repo, run, ports } = await deployed(['agent-1', 'agent-2', 'agent-3', 'agent-4'], {
      'agent-1': { state: 'waiting', lastPoll: 1_800_000_000 - 4 },
      'agent-2': { state: 'test', jobId: '11111111-2222-3333-4444-555555555555', lastPoll: 1_800_000_000 - 300 },
      'agent-3': { state: 'offline', lastPoll: 1_800_000_000 - 2 },
    });
    markBusy(repo, 'agent-2');
    fs.writeFileSync(marker(h, 'agent-3'), 'repair\n');
    h.supervisor.states.set('agent-4', 'FATAL');
    const out = await run('agent-status');
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults['summary']).toBe('4 agents: 1 waiting, 1 test, 1 offline (repair), 1 FATAL');
    expect(out.actionResults).toMatchObject({
      'agents.agent-1.name': 'agent-1',
      'agents.agent-1.supervisor': 'RUNNING',
      'agents.agent-1.uptime': '1h',
      'agents.agent-1.agent-state': 'waiting',
      'agents.agent-1.since-last-poll': '4s',
      'agents.agent-1.offline-marker': 'none',
      'agents.agent-1.metrics-port': String(ports['agent-1']),
      'agents.agent-1.busy': 'no',
      // A long job does not poll: busy, not stale.
      'agents.agent-2.job': '11111111-2222-3333-4444-555555555555',
      'agents.agent-2.busy': 'yes',
      'agents.agent-2.since-last-poll': '300s',
      'agents.agent-3.offline-marker': `${marker(h, 'agent-3')}: repair`,
      'agents.agent-4.supervisor': 'FATAL',
      'agents.agent-4.pid': '0',
      'agents.agent-4.agent-state': 'not running',
    });
    expect(out.actionResults['agents.agent-1.pid']).toMatch(/^\d+$/);
  });

  it('an idle agent that has not polled for a few polling intervals is stale', async () => {
    const { run } = await deployed(['agent-1', 'agent-2'], { 'agent-1': { state: 'waiting', lastPoll: 1_800_000_000 - 31 }, 'agent-2': { state: 'waiting', lastPoll: 1_800_000_000 - 29 } });
    const out = await run('agent-status');
    // polling_interval is 10 in these confs: stale after 30 s.
    expect(out.actionResults['summary']).toBe('2 agents: 1 stale, 1 waiting');
    expect(out.actionResults['agents.agent-1.since-last-poll']).toBe('31s (stale)');
  });

  it('selects agents by names and globs, and refuses a pattern that names none', async () => {
    const { run } = await deployed(['agent-1', 'agent-2', 'lab-x']);
    const some = await run('agent-status', { agents: 'agent-*, lab-x' });
    expect(some.actionResults['summary']).toMatch(/^3 agents: /);
    const one = await run('agent-status', { agents: 'agent-?' });
    expect(Object.keys(one.actionResults).filter((k) => k.endsWith('.name'))).toEqual(['agents.agent-1.name', 'agents.agent-2.name']);
    expect((await run('agent-status', { agents: 'agent-9' })).actionFailure).toBe('agent-status: agents: no agent matches agent-9');
    expect((await run('agent-status', { agents: 'a/b' })).actionFailure).toMatch(/agents: "a\/b" is not an agent name or glob/);
  });

  it('keys agents as Juju allows, each entry naming its agent', async () => {
    const { run } = await deployed(['Agent_7', 'agent-7', 'stdout']);
    const out = await run('agent-status');
    expect(out.actionFailure).toBeUndefined();
    const names = Object.entries(out.actionResults).filter(([k]) => k.endsWith('.name'));
    expect(names).toEqual([
      ['agents.agent-7.name', 'Agent_7'],
      ['agents.agent-2.name', 'agent-7'],
      ['agents.agent-3.name', 'stdout'],
    ]);
  });
});

describe('set-offline and set-online', () => {
  it('writes the marker with the reason, names the agents finishing a job, and set-online removes it', async () => {
    const { h, repo, run } = await deployed(['agent-1', 'agent-2']);
    markBusy(repo, 'agent-2');
    const off = await run('set-offline', { reason: 'repair: serial cable' });
    expect(off.actionFailure).toBeUndefined();
    expect(off.actionResults).toEqual({ offline: 'agent-1,agent-2', 'finishing-a-job': 'agent-2', refused: 'none' });
    expect(readText(marker(h, 'agent-1'))).toBe('repair: serial cable\n');
    // Nothing was asked of supervisord: the agents finish what they run, then take no job.
    expect(h.supervisor.processCalls()).toEqual([]);
    expect(h.supervisor.signalCalls()).toEqual([]);
    const on = await run('set-online', { agents: 'agent-1' });
    expect(on.actionResults).toMatchObject({ online: 'agent-1', 'markers-removed': marker(h, 'agent-1') });
    expect(fs.existsSync(marker(h, 'agent-1'))).toBe(false);
    expect(fs.existsSync(marker(h, 'agent-2'))).toBe(true);
  });

  it('set-online also removes the forms the agent obeys (agent_id, no dash before the number)', async () => {
    const { h, run } = await deployed(['agent-1']);
    fs.writeFileSync(marker(h, 'agent1'), '');
    const on = await run('set-online');
    expect(on.actionResults['markers-removed']).toBe(marker(h, 'agent1'));
  });

  it("an agent_id with ../ names no marker: agent-status does not read the file it would name, set-online does not remove it", async () => {
    const { h, repo, run } = await deployed(['agent-1']);
    const victim = path.join(h.root, 'etc', 'tf-victim');
    fs.mkdirSync(path.dirname(victim), { recursive: true });
    fs.writeFileSync(victim, 'root-only content\n');
    // From the config repo: the conf is refused where it enters, so no agent gets that id.
    repo.addAgent('agent-2', labAgentConf('agent-2', { agent_id: 'x/../../etc/tf-victim' }));
    repo.commit('an agent_id that climbs out of /tmp');
    await h.ctx.run(h.ctx.on.configChanged(), { config: config(repo) });
    expect(h.state().agentIds['agent-2']).toBeUndefined();
    // A state written before the check (or edited) still names no file outside the marker dir.
    h.editState((s) => (s.agentIds['agent-1'] = 'x/../../etc/tf-victim'));
    const status = await run('agent-status');
    expect(JSON.stringify(status.actionResults)).not.toMatch(/tf-victim|root-only/);
    expect(status.actionResults['agents.agent-1.offline-marker']).toBe('none');
    const on = await run('set-online');
    expect(on.actionResults['markers-removed']).toBe('none');
    expect(readText(victim)).toBe('root-only content\n');
  });

  it("a marker another account owns (a FIFO, a stranger's file) is neither read, obeyed nor removed", async () => {
    const { h, run } = await deployed(['agent-1', 'agent-2']);
    fs.writeFileSync(marker(h, 'agent-1'), 'planted\n');
    fs.chownSync(marker(h, 'agent-1'), 54321, 54321);
    execFileSync('mkfifo', [marker(h, 'agent-2')]);
    const status = await run('agent-status');
    expect(status.actionResults['agents.agent-1.offline-marker']).toBe(`${marker(h, 'agent-1')}: owned by uid 54321, neither the agent's user nor root`);
    expect(status.actionResults['agents.agent-2.offline-marker']).toBe(`${marker(h, 'agent-2')}: not a regular file`);
    const on = await run('set-online');
    expect(on.actionResults['markers-removed']).toBe('none');
    expect(on.actionResults['left-not-regular-files']).toBe(`${marker(h, 'agent-1')},${marker(h, 'agent-2')}`);
    expect(readText(marker(h, 'agent-1'))).toBe('planted\n');
  });

  it('never writes through or removes a link planted at the marker path', async () => {
    const { h, run } = await deployed(['agent-1', 'agent-2']);
    const target = path.join(h.root, 'precious');
    fs.writeFileSync(target, 'keep me\n');
    fs.symlinkSync(target, marker(h, 'agent-1'));
    const off = await run('set-offline', { reason: 'x' });
    expect(off.actionResults['offline']).toBe('agent-2');
    expect(off.actionResults['refused']).toBe(`agent-1: ${marker(h, 'agent-1')} is a link; refused`);
    expect(readText(target)).toBe('keep me\n');
    const on = await run('set-online');
    expect(on.actionResults['left-not-regular-files']).toBe(marker(h, 'agent-1'));
    expect(fs.lstatSync(marker(h, 'agent-1')).isSymbolicLink()).toBe(true);
  });

  it.each([
    ['a control character', 'line one\nline two', /reason must not contain control characters/],
    ['a long reason', 'x'.repeat(201), /reason is longer than 200 characters/],
    ['an empty reason', '  ', /reason is empty/],
  ])('refuses %s and writes nothing', async (_what, reason, expected) => {
    const { h, run } = await deployed(['agent-1']);
    const out = await run('set-offline', { reason });
    expect(out.actionFailure).toMatch(expected);
    expect(fs.existsSync(marker(h, 'agent-1'))).toBe(false);
  });
});

describe('restart-agents', () => {
  it('mode=safe sends USR1 to the agents named and records it', async () => {
    const { h, run } = await deployed(['agent-1', 'agent-2']);
    const out = await run('restart-agents', { agents: 'agent-2' });
    expect(out.actionResults).toEqual({ 'asked-to-restart': 'agent-2', 'not-running': 'none', mode: 'safe' });
    expect(h.supervisor.signalCalls()).toEqual([['agent-2']]);
    const status = await run('agent-status', { agents: 'agent-2' });
    expect(status.actionResults['agents.agent-2.last-restart']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ safe by restart-agents$/);
  });

  it('mode=now stops and starts idle agents and refuses a busy one unless forced', async () => {
    const { h, repo, run } = await deployed(['agent-1', 'agent-2']);
    markBusy(repo, 'agent-2');
    const out = await run('restart-agents', { mode: 'now' });
    expect(out.actionResults).toMatchObject({ restarted: 'agent-1', 'refused-busy': 'agent-2 (running a job; force=true stops it)', failed: 'none' });
    expect(h.supervisor.processCalls()).toEqual([
      ['stopProcess', 'agent-1'],
      ['startProcess', 'agent-1'],
    ]);
    const forced = await run('restart-agents', { mode: 'now', agents: 'agent-2', force: true });
    expect(forced.actionResults).toMatchObject({ restarted: 'agent-2', 'refused-busy': 'none' });
    const status = await run('agent-status', { agents: 'agent-2' });
    expect(status.actionResults['agents.agent-2.last-restart']).toMatch(/ now by restart-agents \(forced\)$/);
  });

  it('mode=now starts an agent supervisord gave up on', async () => {
    const { h, run } = await deployed(['agent-1']);
    h.supervisor.states.set('agent-1', 'FATAL');
    const out = await run('restart-agents', { mode: 'now' });
    expect(out.actionResults['restarted']).toBe('agent-1');
    expect(h.supervisor.states.get('agent-1')).toBe('RUNNING');
  });

  it('refuses a mode it does not know', async () => {
    const { run } = await deployed(['agent-1']);
    expect((await run('restart-agents', { mode: 'later' })).actionFailure).toMatch(/^invalid parameters for restart-agents: mode: Invalid enum value/);
  });
});

describe('agent-logs', () => {
  it("returns the last lines with the charm's secrets masked", async () => {
    const keys = sshKeyPair();
    const keyLine = keys.privateKey.split('\n')[1] as string;
    const { h } = await deployed(['agent-1']);
    fs.mkdirSync(path.dirname(h.host.paths.tokenFile), { recursive: true });
    fs.writeFileSync(h.host.paths.tokenFile, JSON.stringify({ refresh_token: 'rt-abcdef123456', obtained_at: new Date().toISOString() }));
    h.supervisor.logs.set('agent-1', ['old line', 'token rt-abcdef123456 used', `key ${keyLine}`, 'client lab-secret-key-1 here', 'last line', ''].join('\n'));
    const secretId = 'secret:d1lab0credentials0001';
    const out = await h.ctx.run(h.ctx.on.action('agent-logs', { agent: 'agent-1', lines: 4 }), {
      config: { 'config-repo': '/unused', 'config-dir': 'lab1', 'ssh-private-key': b64(keys.privateKey), 'testflinger-server': 'http://127.0.0.1:1', 'credentials-secret': secretId },
      secrets: { [secretId]: { 'client-id': 'lab-host', 'secret-key': 'lab-secret-key-1' } },
    });
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults).toEqual({ log: 'token **** used\nkey ****\nclient **** here\nlast line', lines: '4', cut: expect.stringMatching(/^yes: the last 4 lines/) });
  });

  it("masks the MQTT broker's password too", async () => {
    const { h } = await deployed(['agent-1']);
    h.supervisor.logs.set('agent-1', ['broker said mqtt-pass-0x5e3 is wrong', 'last line', ''].join('\n'));
    const secretId = 'secret:d1lab0mqttcredentials01';
    const out = await h.ctx.run(h.ctx.on.action('agent-logs', { agent: 'agent-1', lines: 2 }), {
      config: { 'config-repo': '/unused', 'config-dir': 'lab1', 'mqtt-broker': 'mqtt://127.0.0.1:1883', 'mqtt-credentials-secret': secretId },
      secrets: { [secretId]: { username: 'lab', password: 'mqtt-pass-0x5e3' } },
    });
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults['log']).toBe('broker said **** is wrong\nlast line');
  });

  it('says when the log was longer than the cap, and refuses an agent it does not run', async () => {
    const { h, run } = await deployed(['agent-1']);
    h.supervisor.logs.set('agent-1', `${'x'.repeat(70 * 1024)}\nend\n`);
    const out = await run('agent-logs', { agent: 'agent-1' });
    expect(out.actionResults).toMatchObject({ log: 'end', lines: '1', cut: expect.stringMatching(/^yes/) });
    const whole = await run('agent-logs', { agent: 'agent-1', lines: 500 });
    expect(whole.actionResults['log']).toBe('end');
    expect((await run('agent-logs', { agent: 'agent-9' })).actionFailure).toBe('agent-logs: agent: no agent named "agent-9" on this host');
    expect((await run('agent-logs', { agent: 'agent-1', lines: 501 })).actionFailure).toMatch(/^invalid parameters for agent-logs: lines: Number must be less than or equal to 500/);
  });
});

it('the agents conf the tests use polls every 10 s (the stale threshold above depends on it)', () => {
  expect(labAgentConf('a')).toMatch(/polling_interval: 10/);
});
