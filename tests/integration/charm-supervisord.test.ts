/**
 * The charm on a real supervisord in a sandbox root, with real git repos and real agents polling
 * a dev server: the operator's day, step by step.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { ConfigRepo, agentConf } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually } from '../helpers/tmp';

jest.setTimeout(120_000);

let server: DevServer;
let sandbox: Sandbox;
let repo: ConfigRepo;

function conf(name: string, extra: Record<string, unknown> = {}): string {
  const base = path.join(sandbox.root, 'tmp/testflinger');
  return agentConf(name, {
    server_address: server.url,
    polling_interval: 10,
    execution_basedir: `${base}/run`,
    logging_basedir: `${base}/logs`,
    results_basedir: `${base}/results`,
    setup_command: 'tf-setup',
    provision_command: 'tf-provision',
    test_command: 'tf-test',
    cleanup_command: 'tf-cleanup',
    ...extra,
  });
}

function pids(): Record<string, number | undefined> {
  return Object.fromEntries([...sandbox.programs()].map(([name, p]) => [name, p.pid]));
}

function ports(): Record<string, string | undefined> {
  return Object.fromEntries(
    fs.readdirSync(path.join(sandbox.root, 'etc/supervisor/conf.d')).map((f) => [f, / -p (\d+)/.exec(fs.readFileSync(path.join(sandbox.root, 'etc/supervisor/conf.d', f), 'utf8'))?.[1]]),
  );
}

async function allRunning(names: string[]) {
  await eventually(() => names.every((n) => sandbox.programs().get(n)?.state === 'RUNNING'), `${names.join(', ')} RUNNING`);
  // Agents report in once started; then they are idle and a USR1 restarts them at once.
  await eventually(() => names.every((n) => server.agents.get(n)?.['state'] === 'waiting'), 'agents waiting');
}

beforeAll(async () => {
  // A server that, like the real one, wants every agent signed in with a Bearer token.
  server = new DevServer({ auth: { clientId: 'lab-host', secret: 'lab-secret' } });
  await server.start();
  sandbox = new Sandbox();
  repo = new ConfigRepo('lab1');
  repo.addAgent('agent-1', conf('agent-1')).addAgent('agent-2', conf('agent-2')).commit('two agents');
  sandbox.unit.update((s) => {
    s.secrets['secret:d1lab0credentials0001'] = { 'client-id': 'lab-host', 'secret-key': 'lab-secret' };
  });
  sandbox.setConfig({ 'config-repo': repo.url, 'config-dir': 'lab1', 'testflinger-server': server.url, 'credentials-secret': 'secret:d1lab0credentials0001' });
});

afterAll(async () => {
  await sandbox.shutdown();
  await server.stop();
});

describe('an agent host on a real supervisord', () => {
  let firstPorts: Record<string, string | undefined>;

  it('deploy (install, config-changed, start): both agents RUNNING, status active', async () => {
    await sandbox.hook('install');
    await sandbox.hook('config-changed');
    await sandbox.hook('start');
    await allRunning(['agent-1', 'agent-2']);
    await sandbox.hook('update-status');
    expect(sandbox.status).toEqual({ status: 'active', message: '2 agents running' });
    // The agents signed in with the token the charm obtained; the server refused nothing.
    expect(server.requests.filter((r) => r.path === '/v1/oauth2/token')).toHaveLength(1);
    expect(server.requests.filter((r) => r.status === 401)).toEqual([]);
    firstPorts = ports();
    expect(new Set(Object.values(firstPorts)).size).toBe(2);
  });

  it('a third agent and a changed conf: the changed one restarts, the third starts, the untouched one keeps its pid', async () => {
    const before = pids();
    repo.addAgent('agent-1', conf('agent-1', { location: 'rack 7' })).addAgent('agent-3', conf('agent-3')).commit('change one, add one');
    const { results, failed, message } = await sandbox.action('update-configs');
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    expect(results).toMatchObject({ added: 'agent-3', changed: 'agent-1', restarted: 'agent-1', removed: '', agents: '3' });
    await eventually(() => pids()['agent-1'] !== before['agent-1'] && sandbox.programs().get('agent-1')?.state === 'RUNNING', 'agent-1 restarted');
    await allRunning(['agent-1', 'agent-2', 'agent-3']);
    expect(pids()['agent-2']).toBe(before['agent-2']);
    // The restart was the agent's own, on USR1: it said so in its log before exiting.
    expect(sandbox.supervisorctl('tail', 'agent-1')).toBeDefined();
    const log = fs.readdirSync(path.join(sandbox.root, 'var/log/supervisor')).filter((f) => f.startsWith('agent-1-stdout'));
    const text = log.map((f) => fs.readFileSync(path.join(sandbox.root, 'var/log/supervisor', f), 'utf8')).join('');
    expect(text).toMatch(/restart requested/);
    expect(text).toMatch(/exiting for a safe restart/);
    const now = ports();
    expect(now['agent-1.conf']).toBe(firstPorts['agent-1.conf']);
    expect(now['agent-2.conf']).toBe(firstPorts['agent-2.conf']);
  });

  it('the rendered agent environment reaches the agent: its location went to the server', async () => {
    await eventually(() => server.agents.get('agent-1')?.['location'] === 'rack 7', 'new location posted');
  });

  it('a removed agent is stopped and its program file deleted', async () => {
    const before = pids();
    repo.removeAgent('agent-2').commit('remove agent-2');
    await sandbox.hook('config-changed');
    expect(fs.existsSync(sandbox.programFile('agent-2'))).toBe(false);
    await eventually(() => !sandbox.programs().has('agent-2'), 'agent-2 gone');
    expect(pids()['agent-1']).toBe(before['agent-1']);
    expect(pids()['agent-3']).toBe(before['agent-3']);
    expect(ports()['agent-1.conf']).toBe(firstPorts['agent-1.conf']);
    await sandbox.hook('update-status');
    expect(sandbox.status).toEqual({ status: 'active', message: '2 agents running' });
  });

  it('a bad config-repo URL blocks the unit with the reason and leaves the agents running', async () => {
    const before = pids();
    sandbox.setConfig({ 'config-repo': path.join(sandbox.root, 'no-such-repo') });
    await sandbox.hook('config-changed');
    expect(sandbox.status?.status).toBe('blocked');
    expect(sandbox.status?.message).toMatch(/^config-repo: cannot clone .*no-such-repo: /);
    expect(pids()).toEqual(before);
    expect(fs.existsSync(path.join(sandbox.root, 'srv/agent-configs/lab1/agent-1/testflinger-agent.conf'))).toBe(true);
    sandbox.setConfig({ 'config-repo': repo.url });
    await sandbox.hook('config-changed');
    expect(sandbox.status).toEqual({ status: 'active', message: '2 agents running' });
    expect(pids()).toEqual(before);
  });

  it('a job runs to completion under supervisord, through the rendered phase scripts and the fake device connector', async () => {
    const id = server.submitJob({ job_queue: 'agent-3-queue', provision_data: { distro: 'noble' }, test_data: { test_cmds: 'echo "hello from $DEVICE_IP"' } });
    await eventually(() => server.resultView(id)?.['job_state'] === 'complete', 'job complete', 30000);
    const result = server.resultView(id) as Record<string, unknown>;
    expect(result).toMatchObject({ setup_status: 0, provision_status: 0, test_status: 0, cleanup_status: 0 });
    expect(result['provision_output']).toMatch(/fake device 127\.0\.0\.1\] would provision "noble"/);
    expect(result['test_output']).toMatch(/hello from 127\.0\.0\.1/);
  });
});
