/** The agent host charm, one event at a time: state in, state out, host files under a temp root. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { ActiveStatus, WaitingStatus } from '../../src/ops';
import { hostPaths } from '../../src/charm/paths';
import { parseAgentConfig } from '../../src/agent/config';
import { parseCharmConfig } from '../../src/charm/config';
import { emptyHostState, loadHostState } from '../../src/charm/state';
import { unitStatus } from '../../src/charm/unitstatus';
import { b64, capacity, charmHarness, labAgentConf, labRepo, markBusy, programDir, sshKeyPair } from '../helpers/charm';
import { ConfigRepo } from '../helpers/gitrepo';

function config(repo: ConfigRepo, extra: Record<string, unknown> = {}) {
  return { 'config-repo': repo.url, 'config-dir': 'lab1', ...extra };
}

function filesUnder(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root, { recursive: true }).map(String);
}

describe('config-changed with a bad value blocks, names the option, and changes nothing', () => {
  const keys = sshKeyPair();
  it.each([
    ['ssh-private-key', { 'ssh-private-key': 'not base64!' }, /ssh-private-key is not valid base64/],
    ['ssh-private-key', { 'ssh-private-key': b64('hello') }, /ssh-private-key does not decode to a PEM or OpenSSH private key/],
    ['ssh-public-key', { 'ssh-public-key': b64(keys.privateKey) }, /ssh-public-key does not decode to an SSH public key/],
    ['config-repo', { 'config-repo': '' }, /config-repo is not set/],
    ['config-dir', { 'config-dir': '' }, /config-dir is not set/],
    ['config-dir', { 'config-dir': '../etc' }, /^config-dir must be a relative path of names/],
    ['config-dir', { 'config-dir': 'lab"1' }, /^config-dir must be a relative path of names/],
    ['config-dir', { 'config-dir': '/etc' }, /^config-dir must be a relative path of names/],
    ['testflinger-server', { 'testflinger-server': 'testflinger.example.com' }, /testflinger-server must be a URL starting with http:\/\/ or https:\/\//],
    // Once a new [program:evil] section running as root, by way of the program file's environment=.
    ['testflinger-server', { 'testflinger-server': 'https://x",X="y\n[program:evil]\ncommand=/bin/sh' }, /^testflinger-server must be a plain http/],
    ['testflinger-server', { 'testflinger-server': 'https://tf.example.com/%(ENV_HOME)s' }, /^testflinger-server must be a plain http/],
    ['testflinger-server', { 'testflinger-server': 'https://user:pw@tf.example.com' }, /^testflinger-server must not carry credentials/],
    ['config-branch', { 'config-branch': '  ' }, /config-branch is empty/],
    ['config-branch', { 'config-branch': '--upload-pack=touch /tmp/x' }, /^config-branch must be a branch or tag name/],
    ['config-branch', { 'config-branch': 'a..b' }, /^config-branch is not a valid git branch or tag name/],
    ['config-repo', { 'config-repo': '--upload-pack=touch /tmp/x' }, /^config-repo must not contain spaces/],
    ['config-repo', { 'config-repo': '-oProxyCommand=x' }, /^config-repo must not start with '-'/],
    ['config-repo', { 'config-repo': 'ssh://git:pw@host/repo' }, /^config-repo must not carry a password/],
    ['config-repo', { 'config-repo': 'https://host/repo\nx' }, /^config-repo must not contain spaces/],
    ['config-repo-known-hosts', { 'config-repo-known-hosts': 'host ssh-ed25519\n' }, /^config-repo-known-hosts line 1 is not a known_hosts entry/],
    ['agent-source-repo', { 'agent-source-repo': 'ext::sh -c id' }, /^agent-source-repo must not contain spaces/],
    ['ssh-config', { 'ssh-config': 'Host *\n\u0000' }, /^ssh-config must not contain control characters/],
    // Once 20 s of regex backtracking, twice a hook: now refused by its length before any pattern runs.
    ['ssh-public-key', { 'ssh-public-key': b64(`ssh-rsa AAAA${' '.repeat(200_000)}x\ny`) }, /^ssh-public-key is longer than/],
    ['ssh-public-key', { 'ssh-public-key': b64(`ssh-rsa AAAA${' '.repeat(20_000)}x\ny`) }, /^ssh-public-key does not decode to an SSH public key/],
  ])('%s', async (_option, bad, expected) => {
    const { ctx, root } = charmHarness();
    const out = await ctx.run(ctx.on.configChanged(), { config: { 'config-repo': '/nowhere', 'config-dir': 'lab1', ...bad } });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toMatch(expected);
    expect(out.unitStatus?.message.length).toBeLessThanOrEqual(200);
    expect(filesUnder(root)).toEqual([]);
  });

  it('a long value never makes a long status', async () => {
    const { ctx } = charmHarness();
    const repo = labRepo('agent-1');
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'config-branch': `b${'x'.repeat(5000)}` }) });
    expect(out.unitStatus?.message).toMatch(/^config-branch is longer than 200 characters/);
    const missing = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'config-branch': `b${'x'.repeat(190)}` }) });
    expect(missing.unitStatus?.message).toMatch(/^config-branch: no branch or tag bx+…/);
    expect(missing.unitStatus?.message.length).toBeLessThanOrEqual(200);
  });

  it('keeps the last good state when a later value is bad', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const before = filesUnder(root).sort();
    const program = fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8');
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'ssh-private-key': 'AAAA' }) });
    expect(out.unitStatus?.message).toMatch(/^ssh-private-key/);
    expect(filesUnder(root).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8')).toBe(program);
  });
});

describe('config-changed with a good config', () => {
  it('writes SSH files, clones the repo, renders scripts and one program per agent, and reports them', async () => {
    const { ctx, root, supervisor } = charmHarness();
    const keys = sshKeyPair();
    const repo = labRepo('agent-1', 'agent-2');
    const out = await ctx.run(ctx.on.configChanged(), {
      config: config(repo, { 'ssh-private-key': b64(keys.privateKey), 'ssh-public-key': b64(keys.publicKey) }),
    });
    // Just added: supervisord is starting them (the next update-status reads how they settled).
    expect(out.unitStatus).toEqual(new WaitingStatus('2 agents starting'));
    const ssh = path.join(root, 'home/ubuntu/.ssh');
    expect(fs.readFileSync(path.join(ssh, 'id_rsa'), 'utf8')).toBe(keys.privateKey);
    expect(fs.statSync(path.join(ssh, 'id_rsa')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(ssh, 'id_rsa.pub')).mode & 0o777).toBe(0o644);
    expect(fs.statSync(path.join(ssh, 'config')).mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(path.join(ssh, 'config'), 'utf8')).toMatch(/StrictHostKeyChecking no/);
    for (const script of ['tf-setup', 'tf-provision', 'tf-firmware-update', 'tf-test', 'tf-allocate', 'tf-reserve', 'tf-cleanup']) {
      expect(fs.statSync(path.join(root, 'usr/local/bin', script)).mode & 0o777).toBe(0o775);
    }
    const program = fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8');
    expect(program).toMatch(/^\[program:agent-1\]$/m);
    expect(program).toMatch(new RegExp(`^command=${root}/srv/testflinger-agent/bin/testflinger-agent -c ${root}/srv/agent-configs/lab1/agent-1/testflinger-agent.conf -p 8200 --token-file ${root}/var/lib/testflinger-agent/refresh_token$`, 'm'));
    expect(program).toMatch(/^startsecs=1$/m);
    expect(program).toMatch(/^autorestart=unexpected$/m);
    expect(program).toMatch(/^redirect_stderr=true$/m);
    expect(program).not.toMatch(/^user=/m);
    expect(program).toMatch(new RegExp(`PATH="${root}/usr/local/bin:`));
    expect(program).toMatch(new RegExp(`HOME="${root}/home/ubuntu"`));
    expect(program).toMatch(new RegExp(`TESTFLINGER_AGENT_DIR="${root}/srv/agent-configs/lab1/agent-1"`));
    expect(fs.readFileSync(path.join(root, 'srv/agent-configs/lab1/agent-2/default.yaml'), 'utf8')).toBe('device_ip: 127.0.0.1\n');
    expect(supervisor.signalCalls()).toEqual([]);
    expect(loadHostState(hostPaths(root)).ports).toEqual({ 'agent-1': 8200, 'agent-2': 8201 });
  });

  it('installs the runtime the program files call, even when install never ran on this host', async () => {
    const { ctx, root } = charmHarness();
    await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1')) });
    expect(fs.existsSync(path.join(root, 'srv/testflinger-agent/current/testflinger-agent.js'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'srv/testflinger-agent/bin/testflinger-agent'))).toBe(true);
  });

  it('a second run with nothing changed restarts no agent and runs no update', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const callsBefore = supervisor.calls.length;
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(supervisor.calls.slice(callsBefore)).toEqual([]);
    expect(out.unitStatus).toEqual(new ActiveStatus('2 agents running'));
  });

  it('an unchanged config-changed only compares hashes: nothing rendered, supervisord read once, the state file untouched', async () => {
    const { ctx, host, root, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const stateFile = hostPaths(root).stateFile;
    const stateBefore = fs.statSync(stateFile).mtimeMs;
    const render = jest.spyOn(host.renderer, 'render');
    const reads = jest.spyOn(supervisor, 'readPrograms');
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus).toEqual(new ActiveStatus('2 agents running'));
    expect(render).not.toHaveBeenCalled();
    expect(reads).toHaveBeenCalledTimes(1);
    expect(fs.statSync(stateFile).mtimeMs).toBe(stateBefore);
  });

  it('a program file deleted by hand is written again by the next config-changed', async () => {
    const { ctx, root, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const file = path.join(programDir(root), 'agent-1.conf');
    const content = fs.readFileSync(file, 'utf8');
    fs.rmSync(file);
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
    expect(supervisor.signalCalls()).toEqual([]);
  });

  it('signals only the agent whose directory changed; a new agent starts without a signal', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    repo.addAgent('agent-1', labAgentConf('agent-1', { polling_interval: 5 })).addAgent('agent-3', labAgentConf('agent-3')).commit('change');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(supervisor.calls.filter((c) => c[0] === 'update')).toHaveLength(1);
    expect(supervisor.signalCalls()).toEqual([['agent-1']]);
  });

  it('signals every agent when something they share changes (SSH files)', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'ssh-config': 'ConnectTimeout 5\n' }) });
    expect(supervisor.signalCalls()).toEqual([['agent-1', 'agent-2']]);
  });

  it('a restart request that could not be delivered is retried by update-status', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    repo.addAgent('agent-2', labAgentConf('agent-2', { location: 'moved' })).commit();
    supervisor.failSignals = true;
    const failed = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(failed.unitStatus?.name).toBe('waiting');
    expect(failed.unitStatus?.message).toBe('2 agents running; restart pending for agent-2');
    expect(failed.logs.some((l) => /could not ask agent-2 to restart; will retry: supervisord is not answering/.test(l.message))).toBe(true);
    const stillFailing = await ctx.run(ctx.on.updateStatus(), { config: config(repo) });
    expect(stillFailing.unitStatus?.message).toBe('2 agents running; restart pending for agent-2');
    supervisor.failSignals = false;
    const retried = await ctx.run(ctx.on.updateStatus(), { config: config(repo) });
    expect(supervisor.signalCalls()).toEqual([['agent-2']]);
    expect(retried.unitStatus).toEqual(new ActiveStatus('2 agents running'));
  });

  it('accepts a directory name that differs from agent_id', async () => {
    const { ctx, root } = charmHarness();
    const repo = new ConfigRepo('lab1');
    repo.addAgent('agent002', labAgentConf('agent-002')).commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus).toEqual(new WaitingStatus('1 agent starting'));
    expect(fs.readFileSync(path.join(programDir(root), 'agent002.conf'), 'utf8')).toMatch(/TESTFLINGER_AGENT_DIR="[^"]*\/lab1\/agent002"/);
  });

  it('reports an agent whose conf does not parse, by name and key, and runs the others', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    repo.addAgent('agent-bad', 'agent_id: agent-bad\njob_queues: []\nserver_address: x\n').commit();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toMatch(/^0 agents running, 1 starting; bad conf: agent-bad/);
    expect(out.logs.some((l) => /skipping agent "agent-bad": "testflinger-agent.conf: job_queues/.test(l.message))).toBe(true);
    expect(fs.existsSync(path.join(programDir(root), 'agent-bad.conf'))).toBe(false);
  });

  it('keeps a running agent whose conf went bad, and says so', async () => {
    const { ctx, root, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    repo.addAgent('agent-2', 'agent_id: agent-2\nbogus_key: 1\n').commit('typo');
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(fs.existsSync(path.join(programDir(root), 'agent-2.conf'))).toBe(true);
    expect(out.unitStatus?.message).toMatch(/bad conf: agent-2/);
    expect(supervisor.signalCalls()).toEqual([]);
  });

  it('a clone that fails blocks with the reason and keeps the previous tree and agents', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'config-repo': path.join(root, 'missing-repo') }) });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toMatch(/^config-repo: cannot clone .*missing-repo: /);
    expect(fs.existsSync(path.join(root, 'srv/agent-configs/lab1/agent-1/testflinger-agent.conf'))).toBe(true);
    expect(fs.existsSync(path.join(programDir(root), 'agent-1.conf'))).toBe(true);
    const branch = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'config-branch': 'nope' }) });
    expect(branch.unitStatus?.message).toMatch(/^config-branch: no branch or tag nope in /);
    const recovered = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(recovered.unitStatus).toEqual(new ActiveStatus('1 agent running'));
  });

  it('a config-dir missing from the repo blocks and keeps the previous tree', async () => {
    const { ctx } = charmHarness();
    const repo = labRepo('agent-1');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo, { 'config-dir': 'lab9' }) });
    expect(out.unitStatus?.message).toMatch(/^config-dir: lab9 is not a directory in the repo at main/);
  });
});

describe('agent credentials', () => {
  let server: DevServer;
  beforeAll(async () => {
    server = new DevServer({ auth: { clientId: 'lab-1', secret: 'k3y' } });
    await server.start();
  });
  afterAll(() => server.stop());
  const secrets = { 'secret:cred123': { 'client-id': 'lab-1', 'secret-key': 'k3y' } };

  it('trades the credentials secret for a refresh token the agents read, once per three days', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    const cfg = config(repo, { 'testflinger-server': server.url, 'credentials-secret': 'secret:cred123' });
    const out = await ctx.run(ctx.on.configChanged(), { config: cfg, secrets });
    expect(out.unitStatus).toEqual(new WaitingStatus('1 agent starting'));
    const tokenFile = path.join(root, 'var/lib/testflinger-agent/refresh_token');
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600);
    const { refresh_token } = JSON.parse(fs.readFileSync(tokenFile, 'utf8')) as { refresh_token: string };
    const refreshed = await fetch(`${server.url}/v1/oauth2/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token }) });
    expect(refreshed.status).toBe(200);
    await ctx.run(ctx.on.updateStatus(), { config: cfg, secrets });
    expect(server.requests.filter((r) => r.path === '/v1/oauth2/token')).toHaveLength(1);
    await ctx.run(ctx.on.secretChanged({ id: 'secret:cred123', revision: 2 }), { config: cfg, secrets });
    expect(server.requests.filter((r) => r.path === '/v1/oauth2/token')).toHaveLength(2);
  });

  it('leaves the token alone when a secret other than credentials-secret changes', async () => {
    const { ctx } = charmHarness();
    const cfg = config(labRepo('agent-1'), { 'testflinger-server': server.url, 'credentials-secret': 'secret:cred123' });
    const longForm = 'secret://00000000-0000-4000-8000-000000000001/cred123';
    const withOther = { ...secrets, [longForm]: secrets['secret:cred123'], 'secret:other456': { password: 'x' } };
    const first = await ctx.run(ctx.on.configChanged(), { config: cfg, secrets: withOther });
    const tokens = () => server.requests.filter((r) => r.path === '/v1/oauth2/token').length;
    const before = tokens();
    await ctx.run(ctx.on.secretChanged({ id: 'secret:other456', label: 'db' }), first);
    expect(tokens()).toBe(before);
    // Juju may give the long form of the URI: it is the same secret.
    await ctx.run(ctx.on.secretChanged({ id: longForm }), first);
    expect(tokens()).toBe(before + 1);
  });

  it('blocks naming credentials-secret when the server refuses them, and keeps the agents', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    const cfg = config(repo, { 'testflinger-server': server.url, 'credentials-secret': 'secret:cred123' });
    const out = await ctx.run(ctx.on.configChanged(), { config: cfg, secrets: { 'secret:cred123': { 'client-id': 'lab-1', 'secret-key': 'wrong' } } });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toMatch(/^credentials-secret: http:\/\/127\.0\.0\.1:\d+ refused the credentials \(HTTP 401/);
    expect(fs.existsSync(path.join(programDir(root), 'agent-1.conf'))).toBe(true);
  });

  it('needs testflinger-server to go with credentials-secret', async () => {
    const { ctx } = charmHarness();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1'), { 'credentials-secret': 'secret:cred123' }) });
    expect(out.unitStatus?.message).toBe('credentials-secret needs testflinger-server, the server that issues the token; host unchanged');
  });
});

describe('many agents on one host', () => {
  function manyAgents(count: number): ConfigRepo {
    const repo = new ConfigRepo('lab1');
    for (let i = 0; i < count; i++) repo.addAgent(`agent-${i}`, labAgentConf(`agent-${i}`));
    repo.commit();
    return repo;
  }

  it('reports a host too small for its agents, and still runs them', async () => {
    const { ctx, root } = charmHarness();
    const saved = { ...capacity };
    try {
      capacity.maxOpenFiles = 512;
      const out = await ctx.run(ctx.on.configChanged(), { config: config(manyAgents(20)) });
      expect(out.unitStatus?.message).toBe('host too small: 20 agents need 1024 open files but the hard limit is 512');
      expect(fs.readdirSync(programDir(root))).toHaveLength(20);
    } finally {
      Object.assign(capacity, saved);
    }
  });

  it('raises supervisord limits with a restart only when no agent is running a job, waiting for exactly the busy one', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = manyAgents(120);
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const restarts = () => supervisor.calls.filter((c) => c[0] === 'restart');
    const endJob = markBusy(repo, 'agent-7');
    for (let i = 120; i < 140; i++) repo.addAgent(`agent-${i}`, labAgentConf(`agent-${i}`));
    repo.commit('twenty more');

    const deferred = await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    expect(restarts()).toEqual([]);
    expect(deferred.unitStatus?.message).toMatch(/140 agents running; supervisord restart for new limits waits until no agent runs a job/);
    expect(deferred.logs.filter((l) => /restart for new limits waits for/.test(l.message)).map((l) => l.message)).toEqual(['supervisord restart for new limits waits for agent-7 to finish a job']);

    const stillBusy = await ctx.run(ctx.on.updateStatus(), { config: config(repo) });
    expect(restarts()).toEqual([]);
    expect(stillBusy.unitStatus?.message).toMatch(/waits until no agent runs a job/);

    endJob();
    const applied = await ctx.run(ctx.on.updateStatus(), { config: config(repo) });
    expect(restarts()).toEqual([['restart']]);
    expect(applied.unitStatus).toEqual(new ActiveStatus('140 agents running'));
  });
});

describe('install, upgrade-charm, status', () => {
  it('install puts the shipped runtime under versions/ with a current link and wrappers, and skips packages in a sandbox', async () => {
    const { ctx, root } = charmHarness();
    const out = await ctx.run(ctx.on.install(), {});
    const current = fs.readlinkSync(path.join(root, 'srv/testflinger-agent/current'));
    expect(current).toMatch(/^versions\/charm-[0-9a-f]{12}$/);
    expect(fs.existsSync(path.join(root, 'srv/testflinger-agent', current, 'testflinger-agent.js'))).toBe(true);
    const wrapper = fs.readFileSync(path.join(root, 'srv/testflinger-agent/bin/testflinger-device-connector'), 'utf8');
    expect(wrapper).toMatch(/current\/testflinger-device-connector\.js "\$@"/);
    expect(out.logs.some((l) => /skipping packages/.test(l.message))).toBe(true);
    expect(out.unitStatus?.message).toMatch(/config-repo is not set/);
  });

  it('upgrade-charm asks every agent to restart once idle', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.install(), { config: config(repo) });
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    await ctx.run(ctx.on.upgradeCharm(), { config: config(repo) });
    expect(supervisor.signalCalls()).toEqual([['agent-1', 'agent-2']]);
  });

  it.each([
    ['FATAL', 'blocked', /agent-2 FATAL; 1 of 2 agents running/],
    ['BACKOFF', 'blocked', /agent-2 BACKOFF/],
    ['STARTING', 'waiting', /1 agents running, 1 starting/],
  ])('update-status reports an agent in %s', async (state, status, message) => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    supervisor.states.set('agent-2', state);
    const out = await ctx.run(ctx.on.updateStatus(), { config: config(repo) });
    expect(out.unitStatus?.name).toBe(status);
    expect(out.unitStatus?.message).toMatch(message);
  });

  it('remove stops every agent and deletes its program file', async () => {
    const { ctx, root, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const out = await ctx.run(ctx.on.remove(), { config: config(repo) });
    expect(fs.readdirSync(programDir(root))).toEqual([]);
    expect(supervisor.calls.at(-1)).toEqual(['update']);
    expect([...supervisor.states.keys()]).toEqual([]);
    expect(out.logs.some((l) => /removed the programs of 2 agents/.test(l.message))).toBe(true);
  });

  it('start reports supervisord being down', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    supervisor.running = false;
    const out = await ctx.run(ctx.on.start(), { config: config(repo) });
    expect(out.unitStatus?.message).toBe('supervisord is not running');
  });
});

describe('actions', () => {
  it("a numeric branch (Juju's YAML reading of 2024.10) is refused by Juju's own schema check", async () => {
    const { ctx } = charmHarness();
    const repo = labRepo('agent-1');
    await expect(ctx.run(ctx.on.action('update-testflinger', { branch: 2024.1 }), { config: config(repo) })).rejects.toThrow(/param "branch" is a string in actions.yaml/);
  });

  it('update-configs names the agents added, removed and changed', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2', 'agent-3');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    repo.removeAgent('agent-3').addAgent('agent-4', labAgentConf('agent-4')).addAgent('agent-1', labAgentConf('agent-1', { location: 'rack 2' })).commit();
    const out = await ctx.run(ctx.on.action('update-configs'), { config: config(repo) });
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults).toMatchObject({ agents: '3', added: 'agent-4', removed: 'agent-3', changed: 'agent-1', restarted: 'agent-1' });
    expect(fs.existsSync(path.join(programDir(root), 'agent-3.conf'))).toBe(false);
  });

  it('update-configs asks a changed agent to restart while it is still STARTING or STOPPING (supervisord signals those too)', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2', 'agent-3');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    supervisor.states.set('agent-1', 'STARTING');
    supervisor.states.set('agent-2', 'STOPPING');
    supervisor.states.set('agent-3', 'EXITED');
    for (const name of ['agent-1', 'agent-2', 'agent-3']) repo.addAgent(name, labAgentConf(name, { location: 'rack 3' }));
    repo.commit('move all three');
    const out = await ctx.run(ctx.on.action('update-configs'), { config: config(repo) });
    expect(out.actionResults).toMatchObject({ changed: 'agent-1,agent-2,agent-3', restarted: 'agent-1,agent-2' });
  });

  it('update-configs with a bad config fails and names the option', async () => {
    const { ctx } = charmHarness();
    const out = await ctx.run(ctx.on.action('update-configs'), { config: { 'config-dir': 'lab1' } });
    expect(out.actionFailure).toMatch(/cannot run update-configs: config-repo is not set/);
  });

  it('update-configs fails with the reason when the pull fails', async () => {
    const { ctx, root } = charmHarness();
    const out = await ctx.run(ctx.on.action('update-configs'), { config: { 'config-repo': path.join(root, 'gone'), 'config-dir': 'lab1' } });
    expect(out.actionFailure).toMatch(/update-configs failed, previous configs kept: config-repo: cannot clone/);
  });

  it('update-testflinger reinstalls the shipped runtime and asks all agents to restart', async () => {
    const { ctx, supervisor } = charmHarness();
    const repo = labRepo('agent-1', 'agent-2');
    await ctx.run(ctx.on.install(), { config: config(repo) });
    const out = await ctx.run(ctx.on.action('update-testflinger'), { config: config(repo) });
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults['version']).toMatch(/^charm-[0-9a-f]{12}$/);
    expect(out.actionResults['restarted']).toBe('agent-1,agent-2');
    expect(supervisor.signalCalls().at(-1)).toEqual(['agent-1', 'agent-2']);
  });

  it('update-testflinger with a branch needs agent-source-repo, and a failed build keeps the current runtime', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    await ctx.run(ctx.on.install(), { config: config(repo) });
    const current = fs.readlinkSync(path.join(root, 'srv/testflinger-agent/current'));
    const noSource = await ctx.run(ctx.on.action('update-testflinger', { branch: 'main' }), { config: config(repo) });
    expect(noSource.actionFailure).toMatch(/agent-source-repo is not set/);
    const badRef = await ctx.run(ctx.on.action('update-testflinger', { branch: 'no-such-ref' }), { config: config(repo, { 'agent-source-repo': repo.url }) });
    expect(badRef.actionFailure).toMatch(/update-testflinger failed, charm-[0-9a-f]+ keeps running: cannot check out no-such-ref/);
    expect(fs.readlinkSync(path.join(root, 'srv/testflinger-agent/current'))).toBe(current);
  });

  it('update-testflinger builds a ref of the source repo with npm and switches to it', async () => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    const source = new ConfigRepo('unused');
    source
      .writeFile('package.json', JSON.stringify({ name: 'rt', version: '9.9.9', scripts: { build: 'mkdir -p dist && echo "// agent" > dist/testflinger-agent.js && echo "// conn" > dist/testflinger-device-connector.js' } }))
      .writeFile('package-lock.json', JSON.stringify({ name: 'rt', version: '9.9.9', lockfileVersion: 3, requires: true, packages: { '': { name: 'rt', version: '9.9.9' } } }))
      .commit('runtime');
    await ctx.run(ctx.on.install(), { config: config(repo) });
    const out = await ctx.run(ctx.on.action('update-testflinger', { branch: 'main' }), { config: config(repo, { 'agent-source-repo': source.url }) });
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults['version']).toMatch(/^src-[0-9a-f]{12}-[0-9a-f]{12}$/);
    expect(fs.readFileSync(path.join(root, 'srv/testflinger-agent/current/testflinger-agent.js'), 'utf8')).toBe('// agent\n');
  });
});

describe('the test sandbox in the status', () => {
  const options = { 'config-repo': '/srv/repo', 'config-dir': 'lab1' };
  const applied = { ...emptyHostState(), appliedPrograms: { 'agent-1': 'p1', 'agent-2': 'p2' } };
  const running = [{ name: 'agent-1', state: 'RUNNING', description: '' }, { name: 'agent-2', state: 'RUNNING', description: '' }];

  it('on by default; a sandbox that cannot run blocks, naming test-sandbox and what to do, within 200 characters', () => {
    const reason = `bwrap: setting up uid map: Permission denied ${'x'.repeat(300)}`;
    const status = unitStatus(parseCharmConfig(options), { ...applied, sandboxProblem: reason }, running);
    expect(status.name).toBe('blocked');
    expect(status.message).toMatch(/^test-sandbox: bwrap cannot make a sandbox here \(bwrap: setting up uid map: Permission denied x+…\); set test-sandbox=false to run tests on the bare host$/);
    expect(status.message.length).toBeLessThanOrEqual(200);
    expect(unitStatus(parseCharmConfig(options), applied, running)).toEqual(new ActiveStatus('2 agents running'));
  });

  it('off: active, and says so; an old problem with the sandbox no longer blocks', () => {
    const off = parseCharmConfig({ ...options, 'test-sandbox': false });
    expect(unitStatus(off, { ...applied, sandboxProblem: 'bwrap: no' }, running)).toEqual(new ActiveStatus('2 agents running; test sandbox off'));
  });
});

describe("an agent's default directories (what the charm's busy check and the agent both read)", () => {
  const conf = 'agent_id: agent-1\njob_queues: [q]\n';
  it('under the state directory the program file names, one per agent', () => {
    expect(parseAgentConfig(conf, 'c', '/srv/testflinger/agent-1')).toMatchObject({
      execution_basedir: '/srv/testflinger/agent-1/run',
      logging_basedir: '/srv/testflinger/agent-1/logs',
      results_basedir: '/srv/testflinger/agent-1/results',
    });
  });

  it("a conf's own basedirs win; without a state directory, upstream's defaults", () => {
    expect(parseAgentConfig(`${conf}execution_basedir: /data/run\n`, 'c', '/srv/testflinger/agent-1')).toMatchObject({ execution_basedir: '/data/run', logging_basedir: '/srv/testflinger/agent-1/logs' });
    expect(parseAgentConfig(conf, 'c')).toMatchObject({ execution_basedir: '/tmp/testflinger/run' });
  });
});
