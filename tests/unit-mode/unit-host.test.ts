/**
 * The charm's unit code paths, run for real: no AGENT_HOST_ROOT, the real dispatch with emulated
 * hook tools, in a unit-mode test host (private namespaces, see tests/helpers/unithost.ts). Agents
 * run under Debian's supervisord as the ubuntu user that useradd made, and sign in to a dev server
 * on the namespace's own loopback with the token the charm obtained.
 */
import * as fs from 'node:fs';
import { APT_LOCK_TIMEOUT_S, HOST_PACKAGES } from '../../src/charm/packages';
import { ConfigRepo, agentConf } from '../helpers/gitrepo';
import { b64, sshKeyPair } from '../helpers/charm';
import { eventually } from '../helpers/tmp';
import { UnitHost, describeOnUnitHost } from '../helpers/unithost';

const SERVER = 'http://127.0.0.1:8000';
/** The server wants every agent signed in: only an agent that can read its token file reports in. */
const CREDENTIALS = { clientId: 'lab-host', secret: 'lab-secret' };
const SECRET_ID = 'secret:d1lab0credentials0001';

let host: UnitHost;
let repo: ConfigRepo;
let ubuntu: { uid: number; gid: number };
const realPasswd = fs.readFileSync('/etc/passwd', 'utf8');
const keys = sshKeyPair();

/** Polls fast: a USR1 restart shows within a poll. The run/log dirs are the defaults in /tmp. */
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

/** The agents' processes run as ubuntu: real, effective, saved and filesystem uid. */
async function expectRunningAsUbuntu(names: string[]): Promise<void> {
  const programs = await host.programs();
  for (const name of names) {
    const pid = programs.get(name)?.pid as number;
    expect({ name, uids: await host.processUids(pid) }).toEqual({ name, uids: [ubuntu.uid, ubuntu.uid, ubuntu.uid, ubuntu.uid] });
  }
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

  it('install: packages checked by apt-get, ubuntu made by useradd, supervisord started by systemctl, agents RUNNING as ubuntu', async () => {
    await host.hook('install');
    ubuntu = await host.userIds('ubuntu');
    const lockOption = `-o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_S}`;
    expect(await host.standInCalls('apt-get')).toEqual([`${lockOption} update -q`, `${lockOption} install -y -q ${HOST_PACKAGES.join(' ')}`]);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor']);
    expect(ubuntu.uid).toBeGreaterThan(0);
    // useradd wrote the namespace's /etc only.
    expect(fs.readFileSync('/etc/passwd', 'utf8')).toBe(realPasswd);

    await allRunning(['agent-1', 'agent-2']);
    await expectRunningAsUbuntu(['agent-1', 'agent-2']);
    // Juju follows with config-changed and start: nothing changed, nothing restarts.
    const before = await pids();
    await host.hook('config-changed');
    await host.hook('start');
    expect(await pids()).toEqual(before);
    // Debian's supervisord, on Debian's socket, reading the charm's files from its conf.d.
    expect((await host.stat('/var/run/supervisor.sock')).type).toBe('socket');
    expect(await host.readFile('/etc/supervisor/conf.d/agent-1.conf')).toMatch(/^user=ubuntu$/m);
    expect(await host.readFile('/etc/supervisor/conf.d/zz-testflinger-limits.conf')).toMatch(/^\[supervisord\]\nminfds=1024\nminprocs=1024$/m);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor']);
    await host.hook('update-status');
    expect(host.status).toEqual({ status: 'active', message: '2 agents running' });
  });

  it('the SSH files, the token file and what the agents write are really owned by ubuntu', async () => {
    expect(await host.stat('/home/ubuntu/.ssh')).toEqual({ ...ubuntu, mode: 0o700, type: 'directory' });
    expect(await host.stat('/home/ubuntu/.ssh/id_rsa')).toEqual({ ...ubuntu, mode: 0o600, type: 'regular file' });
    expect(await host.stat('/home/ubuntu/.ssh/id_rsa.pub')).toEqual({ ...ubuntu, mode: 0o644, type: 'regular file' });
    expect(await host.stat('/home/ubuntu/.ssh/config')).toEqual({ ...ubuntu, mode: 0o640, type: 'regular file' });
    expect(await host.readFile('/home/ubuntu/.ssh/id_rsa')).toBe(keys.privateKey);
    // The token is root's, readable by the agents' group: no job can replace it.
    expect(await host.stat('/var/lib/testflinger-agent/refresh_token')).toEqual({ uid: 0, gid: ubuntu.gid, mode: 0o640, type: 'regular file' });
    expect(await host.stat('/var/lib/testflinger-agent')).toMatchObject({ uid: 0, gid: 0, type: 'directory' });
    expect((await host.execAs('ubuntu', ['sh', '-c', 'echo x > /var/lib/testflinger-agent/refresh_token'])).exitCode).not.toBe(0);
    // The agent's lock, in the default logging_basedir: written by the agent itself.
    expect(await host.stat('/tmp/testflinger/logs/agent-1.pid')).toMatchObject(ubuntu);
    // ubuntu, and not root, can use the key.
    expect((await host.execAs('ubuntu', ['sh', '-c', 'head -c 10 ~/.ssh/id_rsa'])).stdout).toBe(keys.privateKey.slice(0, 10));
    expect((await host.execAs('ubuntu', ['cat', '/etc/shadow'])).exitCode).not.toBe(0);
  });

  it('a job runs to completion through the phase scripts, its commands as ubuntu', async () => {
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
    expect(result['test_output']).toMatch(/ubuntu \/home\/ubuntu/);
    expect(await host.stat('/home/ubuntu/.job-was-here')).toMatchObject(ubuntu);
  });

  it('update-configs adds an agent: it starts as ubuntu; the others and supervisord keep running', async () => {
    const before = await pids();
    const supervisord = await host.supervisordPid();
    repo.addAgent('agent-3', conf('agent-3')).commit('a third agent');
    const { results, failed, message } = await host.action('update-configs');
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    expect(results).toMatchObject({ added: 'agent-3', removed: '', changed: '', restarted: '', agents: '3' });
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    await expectRunningAsUbuntu(['agent-3']);
    expect(await pids()).toMatchObject(before);
    expect(await host.supervisordPid()).toBe(supervisord);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor']);
  });

  it('limits that changed (a drop-in from an older charm) restart supervisord with systemctl, and the agents come back as ubuntu', async () => {
    const before = await pids();
    const supervisord = await host.supervisordPid();
    const limits = '/etc/supervisor/conf.d/zz-testflinger-limits.conf';
    const current = await host.readFile(limits);
    await host.check(['sh', '-c', `printf '[supervisord]\\nminfds=4096\\nminprocs=4096\\n' >${limits}`]);
    await host.hook('config-changed');
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'restart supervisor']);
    expect(host.unit.state().logs.map((l) => l.message)).toContain('restarting supervisord for the limits of 3 agents (no agent is running a job)');
    expect(await host.readFile(limits)).toBe(current);
    expect(await host.supervisordPid()).not.toBe(supervisord);
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    const after = await pids();
    for (const name of ['agent-1', 'agent-2', 'agent-3']) expect(after[name]).not.toBe(before[name]);
    await expectRunningAsUbuntu(['agent-1', 'agent-2', 'agent-3']);
    await host.hook('update-status');
    expect(host.status).toEqual({ status: 'active', message: '3 agents running' });
  });

  it('a job that turns ~/.ssh into a link to conf.d gets nothing written or chowned there; the agents keep running', async () => {
    const before = await pids();
    expect((await host.execAs('ubuntu', ['sh', '-c', 'rm -rf ~/.ssh && ln -s /etc/supervisor/conf.d ~/.ssh'])).exitCode).toBe(0);
    await host.hook('config-changed');
    expect(host.status?.status).toBe('blocked');
    expect(host.status?.message).toMatch(/^SSH files: \/home\/ubuntu\/\.ssh is not a directory/);
    expect((await host.check(['ls', '/etc/supervisor/conf.d'])).split('\n').filter((f) => /id_rsa|config/.test(f))).toEqual([]);
    expect(await host.stat('/etc/supervisor/conf.d')).toMatchObject({ uid: 0, gid: 0 });
    expect(await pids()).toEqual(before);
    // The job's mess undone: the next hook writes the files again and the unit is active.
    expect((await host.execAs('ubuntu', ['sh', '-c', 'rm ~/.ssh'])).exitCode).toBe(0);
    await host.hook('config-changed');
    expect(host.status).toEqual({ status: 'active', message: '3 agents running' });
    expect(await host.stat('/home/ubuntu/.ssh/id_rsa')).toMatchObject({ ...ubuntu, mode: 0o600 });
  });

  it('upgrade-charm: every agent, idle, restarts on its own (USR1) and comes back as ubuntu; supervisord stays', async () => {
    const before = await pids();
    const supervisord = await host.supervisordPid();
    await host.hook('upgrade-charm');
    await eventually(async () => {
      const now = await pids();
      return Object.keys(before).every((n) => now[n] !== undefined && now[n] !== before[n]);
    }, 'every agent restarted');
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    await expectRunningAsUbuntu(['agent-1', 'agent-2', 'agent-3']);
    expect(await host.check(['sh', '-c', 'cat /var/log/supervisor/agent-1-stdout*'])).toMatch(/exiting for a safe restart/);
    expect(await host.supervisordPid()).toBe(supervisord);
    expect(await host.standInCalls('systemctl')).toEqual(['start supervisor', 'restart supervisor']);
  });

  it('remove: the agents stop and their program files go; the distribution\'s supervisord stays', async () => {
    await host.hook('remove');
    expect(await host.programs()).toEqual(new Map());
    expect((await host.check(['ls', '/etc/supervisor/conf.d'])).trim()).toBe('zz-testflinger-limits.conf');
    expect(await host.pidsOf('ubuntu')).toEqual([]);
    expect(await host.supervisordPid()).toBeDefined();
  });
});
