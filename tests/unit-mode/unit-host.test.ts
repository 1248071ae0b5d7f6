/**
 * The charm's unit code paths, run for real: no AGENT_HOST_ROOT, the real dispatch with emulated
 * hook tools, in a unit-mode test host (private namespaces, see tests/helpers/unithost.ts). Agents
 * run under Debian's supervisord, each as its own user that useradd made, in a cgroup of its own
 * (the charm's wrapper), and sign in to a dev server on the namespace's own loopback with the
 * token the charm obtained. What a job can then reach is tests/unit-mode/isolation.test.ts's.
 */
import * as fs from 'node:fs';
import { APT_LOCK_TIMEOUT_S, UNIT_PACKAGES } from '../../src/charm/packages';
import { ConfigRepo, agentConf } from '../helpers/gitrepo';
import { b64, sshKeyPair } from '../helpers/charm';
import { eventually } from '../helpers/tmp';
import { UnitHost, describeOnUnitHost } from '../helpers/unithost';
import { expectStartingOrRunning } from '../helpers/status';

const SERVER = 'http://127.0.0.1:8000';
/** The server wants every agent signed in: only an agent that can read its token file reports in. */
const CREDENTIALS = { clientId: 'lab-host', secret: 'lab-secret' };
const SECRET_ID = 'secret:d1lab0credentials0001';

let host: UnitHost;
let repo: ConfigRepo;
/** testflinger-agents' gid. */
let agentsGid: number;
const realPasswd = fs.readFileSync('/etc/passwd', 'utf8');
const keys = sshKeyPair();

/** Polls fast: a USR1 restart shows within a poll. The run/log dirs are the charm's per-agent defaults. */
function conf(name: string): string {
  return agentConf(name, {
    server_address: SERVER,
    polling_interval: 1,
    setup_command: 'tf-setup',
    provision_command: 'tf-provision',
    test_command: 'tf-test',
    cleanup_command: 'tf-cleanup',
  });
}

async function pids(): Promise<Record<string, number | undefined>> {
  return Object.fromEntries([...(await host.programs())].map(([name, p]) => [name, p.pid]));
}

/** A call to the dev server in the namespace (from inside: its loopback is the namespace's), signed in. */
async function serverApi(method: 'GET' | 'POST', route: string, body?: unknown): Promise<unknown> {
  const script = `(async () => {
    const basic = Buffer.from('${CREDENTIALS.clientId}:${CREDENTIALS.secret}').toString('base64');
    const post = (p, init) => fetch('${SERVER}' + p, { method: 'POST', ...init }).then((r) => r.json());
    const { refresh_token } = await post('/v1/oauth2/token', { headers: { authorization: 'Basic ' + basic } });
    const json = { 'content-type': 'application/json' };
    const { access_token } = await post('/v1/oauth2/refresh', { headers: json, body: JSON.stringify({ refresh_token }) });
    const init = { method: '${method}', headers: { ...json, authorization: 'Bearer ' + access_token } };
    const body = process.argv[1];
    const answer = await fetch('${SERVER}${route}', body ? { ...init, body } : init);
    console.log(await answer.text());
  })()`;
  return JSON.parse(await host.check(['node', '-e', script, ...(body === undefined ? [] : [JSON.stringify(body)])]));
}

/** What the dev server knows of each agent: its state. */
async function agentStates(): Promise<Record<string, string>> {
  const agents = (await serverApi('GET', '/v1/agents/data')) as { name: string; state: string }[];
  return Object.fromEntries(agents.map((a) => [a.name, a.state]));
}

/** Every named agent RUNNING under supervisord and reported in to the server (so idle). */
async function allRunning(names: string[]): Promise<void> {
  await eventually(async () => {
    const programs = await host.programs();
    return names.every((n) => programs.get(n)?.state === 'RUNNING');
  }, `${names.join(', ')} RUNNING`);
  await eventually(async () => {
    const states = await agentStates();
    return names.every((n) => states[n] === 'waiting');
  }, `${names.join(', ')} waiting on the server`);
}

/**
 * Each agent's process runs as its own user (real, effective, saved and filesystem uid), in its
 * own cgroup under supervisord's, named after it; no two agents share a uid.
 */
async function expectRunningAsOwnUsers(names: string[]): Promise<void> {
  const programs = await host.programs();
  const uids = new Set<number>();
  for (const name of names) {
    const pid = programs.get(name)?.pid as number;
    const { uid } = await host.userIds(`tf-${name}`);
    uids.add(uid);
    expect({ name, uids: await host.processUids(pid) }).toEqual({ name, uids: [uid, uid, uid, uid] });
    expect({ name, cgroup: /^0::(.*)$/m.exec(await host.readFile(`/proc/${pid}/cgroup`))?.[1] }).toEqual({ name, cgroup: expect.stringMatching(new RegExp(`/supervisor\\.service/${name}$`)) });
  }
  expect(uids.size).toBe(names.length);
}

describeOnUnitHost(`a unit (no AGENT_HOST_ROOT), for real in private namespaces`, () => {
  beforeAll(async () => {
    repo = new ConfigRepo('lab1');
    repo.addAgent('agent-1', conf('agent-1')).addAgent('agent-2', conf('agent-2')).commit('two agents');
    host = await UnitHost.start({
      keep: [repo.dir],
      config: {
        'config-repo': repo.url,
        'config-dir': 'lab1',
        'testflinger-server': SERVER,
        'credentials-secret': SECRET_ID,
        'ssh-private-key': b64(keys.privateKey),
        'ssh-public-key': b64(keys.publicKey),
      },
    });
    host.unit.update((s) => {
      s.secrets[SECRET_ID] = { 'client-id': CREDENTIALS.clientId, 'secret-key': CREDENTIALS.secret };
    });
    await host.devServer({ port: 8000, auth: CREDENTIALS });
  });

  afterAll(async () => {
    await host?.stop();
  });

  it('install: packages checked by apt-get, a user per agent made by useradd, supervisord restarted with cgroup delegation, agents RUNNING each as its own user in its own cgroup', async () => {
    await host.hook('install');
    const lockOption = `-o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_S}`;
    expect(await host.standInCalls('apt-get')).toEqual([`${lockOption} update -q`, `${lockOption} install -y -q ${UNIT_PACKAGES.join(' ')}`]);
    expect(UNIT_PACKAGES).toContain('bubblewrap');
    // The package's supervisord ran without delegation: the charm restarts it once with it (install: no job runs yet).
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'daemon-reload', 'restart supervisor']);
    expect(await host.readFile('/etc/systemd/system/supervisor.service.d/zz-testflinger-delegate.conf')).toMatch(/^\[Service\]\nDelegate=yes$/m);
    agentsGid = Number((await host.check(['getent', 'group', 'testflinger-agents'])).split(':')[2]);
    for (const name of ['agent-1', 'agent-2']) {
      const entry = (await host.check(['getent', 'passwd', `tf-${name}`])).trim().split(':');
      expect(entry.slice(5)).toEqual([`/var/lib/testflinger-agent/home/${name}`, '/bin/bash']);
      expect(await host.check(['id', '-nG', `tf-${name}`])).toBe(`tf-${name} testflinger-agents\n`);
    }
    // useradd wrote the namespace's /etc only.
    expect(fs.readFileSync('/etc/passwd', 'utf8')).toBe(realPasswd);

    await allRunning(['agent-1', 'agent-2']);
    await expectRunningAsOwnUsers(['agent-1', 'agent-2']);
    // Juju follows with config-changed and start: nothing changed, nothing restarts.
    const before = await pids();
    await host.hook('config-changed');
    await host.hook('start');
    expect(await pids()).toEqual(before);
    // Debian's supervisord, on Debian's socket, reading the charm's files from its conf.d.
    expect((await host.stat('/var/run/supervisor.sock')).type).toBe('socket');
    const program = await host.readFile('/etc/supervisor/conf.d/agent-1.conf');
    expect(program).not.toMatch(/^user=/m);
    expect(program).toMatch(/^command=\/srv\/testflinger-agent\/bin\/testflinger-agent-contained tf-agent-1 agent-1 \/srv\/testflinger-agent\/bin\/testflinger-agent -c /m);
    expect(program).toMatch(/TESTFLINGER_TEST_SANDBOX="on",TESTFLINGER_SANDBOX_PROGRAM="\/usr\/lib\/testflinger-agent-host\/bwrap"/);
    expect(await host.stat('/srv/testflinger-agent/bin/testflinger-agent-contained')).toEqual({ uid: 0, gid: 0, mode: 0o755, type: 'regular file' });
    expect(await host.readFile('/etc/supervisor/conf.d/zz-testflinger-limits.conf')).toMatch(/^\[supervisord\]\nminfds=1024\nminprocs=1024$/m);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'daemon-reload', 'restart supervisor']);
    await host.hook('update-status');
    expect(host.status).toEqual({ status: 'active', message: '2 agents: 2 waiting' });
  });

  it("each agent's home and SSH files are root's, its ssh config and state directory its user's; the key its group's; the token root's alone; its config directory its own", async () => {
    const root = { uid: 0, gid: 0 };
    for (const name of ['agent-1', 'agent-2']) {
      const home = `/var/lib/testflinger-agent/home/${name}`;
      const user = await host.userIds(`tf-${name}`);
      expect(await host.stat(home)).toEqual({ ...root, mode: 0o755, type: 'directory' });
      expect(await host.stat(`${home}/.ssh`)).toEqual({ ...root, mode: 0o755, type: 'directory' });
      expect(await host.stat(`${home}/.ssh/id_rsa`)).toEqual({ uid: 0, gid: agentsGid, mode: 0o640, type: 'regular file' });
      expect(await host.stat(`${home}/.ssh/id_rsa.pub`)).toEqual({ ...root, mode: 0o644, type: 'regular file' });
      expect(await host.stat(`${home}/.ssh/config`)).toEqual({ ...user, mode: 0o644, type: 'regular file' });
      expect(await host.stat(`/srv/testflinger/${name}`)).toEqual({ ...user, mode: 0o700, type: 'directory' });
      // The agent's lock, in its own default logging_basedir: written by the agent itself.
      expect(await host.stat(`/srv/testflinger/${name}/logs/${name}.pid`)).toMatchObject(user);
      // The agent's user, and not root, can use the key; it cannot replace it, nor ~/.ssh.
      expect((await host.execAs(`tf-${name}`, ['sh', '-c', 'head -c 10 ~/.ssh/id_rsa'])).stdout).toBe(keys.privateKey.slice(0, 10));
      expect((await host.execAs(`tf-${name}`, ['sh', '-c', 'mv ~/.ssh ~/.ssh-old || rm -f ~/.ssh/id_rsa || echo x >~/.ssh/id_rsa'])).exitCode).not.toBe(0);
    }
    expect(await host.readFile('/var/lib/testflinger-agent/home/agent-1/.ssh/id_rsa')).toBe(keys.privateKey);
    expect(await host.exists('/home/ubuntu/.ssh')).toBe(false);
    // The token is root's alone: the agents signed in (waiting, above) through the descriptor their wrapper opened.
    expect(await host.stat('/var/lib/testflinger-agent/refresh_token')).toEqual({ uid: 0, gid: 0, mode: 0o600, type: 'regular file' });
    expect((await host.execAs('tf-agent-1', ['cat', '/var/lib/testflinger-agent/refresh_token'])).exitCode).not.toBe(0);
    expect(await host.stat('/var/lib/testflinger-agent')).toMatchObject({ uid: 0, gid: 0, type: 'directory' });
    expect((await host.execAs('tf-agent-1', ['sh', '-c', 'echo x > /var/lib/testflinger-agent/refresh_token'])).exitCode).not.toBe(0);
    // Each agent's config directory (device credentials in default.yaml) is its own.
    expect((await host.execAs('tf-agent-1', ['cat', '/srv/agent-configs/lab1/agent-1/default.yaml'])).exitCode).toBe(0);
    expect((await host.execAs('tf-agent-2', ['cat', '/srv/agent-configs/lab1/agent-1/default.yaml'])).exitCode).not.toBe(0);
    // One agent's user cannot reach another's state directory.
    expect((await host.execAs('tf-agent-1', ['ls', '/srv/testflinger/agent-2'])).exitCode).not.toBe(0);
    expect((await host.execAs('tf-agent-1', ['cat', '/etc/shadow'])).exitCode).not.toBe(0);
    // The charm's bwrap: runnable by the agents' group only.
    expect(await host.stat('/usr/lib/testflinger-agent-host/bwrap')).toEqual({ uid: 0, gid: agentsGid, mode: 0o750, type: 'regular file' });
    const profile = await host.readFile('/etc/apparmor.d/testflinger-bwrap');
    expect(profile).toMatch(/^profile testflinger-bwrap \/usr\/lib\/testflinger-agent-host\/bwrap flags=\(attach_disconnected,mediate_deleted\) \{$/m);
    expect(profile).toMatch(/^ {2}userns,$/m);
    expect(profile).toMatch(/^ {4}deny userns,$/m);
  });

  it("a job runs to completion through the phase scripts, its commands as its agent's user, in the sandbox's throwaway home", async () => {
    const { job_id: id } = (await serverApi('POST', '/v1/job', {
      job_queue: 'agent-1-queue',
      provision_data: { distro: 'noble' },
      test_data: { test_cmds: 'echo "$(id -un) $HOME"; touch ~/.job-was-here' },
    })) as { job_id: string };
    const result = await eventually(async () => {
      const view = (await serverApi('GET', `/v1/result/${id}`)) as Record<string, unknown>;
      return view['job_state'] === 'complete' ? view : undefined;
    }, 'the job complete', 30_000);
    expect(result).toMatchObject({ setup_status: 0, provision_status: 0, test_status: 0, cleanup_status: 0 });
    expect(result['test_output']).toMatch(/tf-agent-1 \/var\/lib\/testflinger-agent\/home\/agent-1/);
    expect(await host.exists('/var/lib/testflinger-agent/home/agent-1/.job-was-here')).toBe(false);
  });

  it('update-configs adds an agent: its user is made and it starts as that user; the others and supervisord keep running', async () => {
    const before = await pids();
    const supervisord = await host.supervisordPid();
    repo.addAgent('agent-3', conf('agent-3')).commit('a third agent');
    const { results, failed, message } = await host.action('update-configs');
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    expect(results).toMatchObject({ added: 'agent-3', removed: '', changed: '', restarted: '', agents: '3' });
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    await expectRunningAsOwnUsers(['agent-1', 'agent-2', 'agent-3']);
    expect(await pids()).toMatchObject(before);
    expect(await host.supervisordPid()).toBe(supervisord);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'daemon-reload', 'restart supervisor']);
  });

  it('limits that changed (a drop-in from an older charm) restart supervisord with systemctl, and the agents come back as their users', async () => {
    const before = await pids();
    const supervisord = await host.supervisordPid();
    const limits = '/etc/supervisor/conf.d/zz-testflinger-limits.conf';
    const current = await host.readFile(limits);
    await host.check(['sh', '-c', `printf '[supervisord]\\nminfds=4096\\nminprocs=4096\\n' >${limits}`]);
    await host.hook('config-changed');
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'daemon-reload', 'restart supervisor', 'restart supervisor']);
    expect(host.unit.state().logs.map((l) => l.message)).toContain('restarting supervisord for the limits of 3 agents (no agent is running a job)');
    expect(await host.readFile(limits)).toBe(current);
    expect(await host.supervisordPid()).not.toBe(supervisord);
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    const after = await pids();
    for (const name of ['agent-1', 'agent-2', 'agent-3']) expect(after[name]).not.toBe(before[name]);
    await expectRunningAsOwnUsers(['agent-1', 'agent-2', 'agent-3']);
    await host.hook('update-status');
    expect(host.status).toEqual({ status: 'active', message: '3 agents: 3 waiting' });
  });

  it('a bwrap that cannot make a sandbox blocks the unit, naming test-sandbox; test-sandbox=false runs the agents without it and says so', async () => {
    // The distribution's bwrap, refused its namespaces (as on Ubuntu 24.04 without the profile).
    const refusing = '#!/bin/sh\necho "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n';
    await host.writeFile('/run/unithost/bwrap-refusing', refusing);
    await host.check(['sh', '-c', 'chmod 0755 /run/unithost/bwrap-refusing && mount --bind /run/unithost/bwrap-refusing /usr/bin/bwrap']);
    await host.hook('config-changed');
    expect(host.status).toEqual({
      status: 'blocked',
      message: 'test-sandbox: bwrap cannot make a sandbox here (bwrap: setting up uid map: Permission denied); set test-sandbox=false to run tests on the bare host',
    });
    host.setConfig({ 'test-sandbox': false });
    await host.hook('config-changed');
    // Their program files changed: supervisord restarted them, and the hook did not wait for them.
    expectStartingOrRunning(host.status, 3, '; test sandbox off');
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    expect(await host.readFile('/etc/supervisor/conf.d/agent-1.conf')).toMatch(/TESTFLINGER_TEST_SANDBOX="off"/);
    // The real bwrap back, the sandbox on again: copied again, checked, active.
    await host.check(['umount', '/usr/bin/bwrap']);
    host.setConfig({ 'test-sandbox': true });
    await host.hook('config-changed');
    expectStartingOrRunning(host.status, 3);
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    expect(await host.readFile('/etc/supervisor/conf.d/agent-1.conf')).toMatch(/TESTFLINGER_TEST_SANDBOX="on"/);
  });

  it('upgrade-charm: every agent, idle, restarts on its own (USR1) and comes back as its user; supervisord stays', async () => {
    const before = await pids();
    const supervisord = await host.supervisordPid();
    await host.hook('upgrade-charm');
    await eventually(async () => {
      const now = await pids();
      return Object.keys(before).every((n) => now[n] !== undefined && now[n] !== before[n]);
    }, 'every agent restarted');
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    await expectRunningAsOwnUsers(['agent-1', 'agent-2', 'agent-3']);
    expect(await host.check(['sh', '-c', 'cat /var/log/supervisor/agent-1-stdout*'])).toMatch(/exiting for a safe restart/);
    expect(await host.supervisordPid()).toBe(supervisord);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'daemon-reload', 'restart supervisor', 'restart supervisor']);
  });

  it('update-configs removes an agent: it stops, its user is locked (expired) and kept, so its files keep their owner; back, it runs again', async () => {
    const expiry = async () => (await host.check(['getent', 'shadow', 'tf-agent-3'])).split(':')[7];
    expect(await expiry()).toBe('');
    repo.removeAgent('agent-3').commit('agent-3 leaves');
    expect((await host.action('update-configs')).results).toMatchObject({ removed: 'agent-3', agents: '2' });
    expect(await host.pidsOf('tf-agent-3')).toEqual([]);
    expect(await expiry()).toBe('1');
    expect((await host.check(['passwd', '--status', 'tf-agent-3'])).split(' ')[1]).toBe('L');
    // Out of the agents' group: no lab key, no config checkout.
    expect((await host.check(['id', '-nG', 'tf-agent-3'])).trim().split(' ')).not.toContain('testflinger-agents');
    expect(await host.stat('/srv/testflinger/agent-3')).toMatchObject(await host.userIds('tf-agent-3'));
    repo.addAgent('agent-3', conf('agent-3')).commit('agent-3 is back');
    expect((await host.action('update-configs')).results).toMatchObject({ added: 'agent-3', agents: '3' });
    expect(await expiry()).toBe('');
    expect((await host.check(['id', '-nG', 'tf-agent-3'])).trim().split(' ')).toContain('testflinger-agents');
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    await expectRunningAsOwnUsers(['agent-3']);
  });

  it('remove: the agents stop and their program files go; the distribution\'s supervisord stays', async () => {
    await host.hook('remove');
    expect(await host.programs()).toEqual(new Map());
    expect((await host.check(['ls', '/etc/supervisor/conf.d'])).trim()).toBe('zz-testflinger-limits.conf');
    for (const name of ['agent-1', 'agent-2', 'agent-3']) expect(await host.pidsOf(`tf-${name}`)).toEqual([]);
    expect(await host.supervisordPid()).toBeDefined();
  });
});
