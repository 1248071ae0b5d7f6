/**
 * The charm on a real supervisord in a sandbox root, with real git repos and real agents polling
 * a dev server: the operator's day, one scenario at a time. Each scenario deploys its own lab
 * (sandbox, repo, server) and stops it after, so one failure cannot cascade into the next.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { labAgentConf } from '../helpers/charm';
import { ConfigRepo } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually } from '../helpers/tmp';

jest.setTimeout(120_000);

const SECRET_ID = 'secret:d1lab0credentials0001';
const CREDENTIALS = { clientId: 'lab-host', secret: 'lab-secret' };

/** A deployed agent host: install and config-changed done, every agent RUNNING and idle. */
class Lab {
  private constructor(
    readonly sandbox: Sandbox,
    readonly repo: ConfigRepo,
    readonly server: DevServer,
  ) {}

  /** The fast shared setup: a server that wants agents signed in, a repo, a sandbox, deployed. */
  static async deploy(agents: string[]): Promise<Lab> {
    const server = new DevServer({ auth: CREDENTIALS });
    await server.start();
    const lab = new Lab(new Sandbox(), new ConfigRepo('lab1'), server);
    for (const name of agents) lab.repo.addAgent(name, lab.conf(name));
    lab.repo.commit('the lab');
    lab.sandbox.unit.update((s) => {
      s.secrets[SECRET_ID] = { 'client-id': CREDENTIALS.clientId, 'secret-key': CREDENTIALS.secret };
    });
    lab.sandbox.setConfig({ 'config-repo': lab.repo.url, 'config-dir': 'lab1', 'testflinger-server': server.url, 'credentials-secret': SECRET_ID });
    await lab.sandbox.hook('install');
    await lab.sandbox.hook('config-changed');
    await lab.allRunning(agents);
    return lab;
  }

  /** An agent conf with its dirs under this sandbox's root, polling often (a job is taken within 2 s). */
  conf(name: string, extra: Record<string, unknown> = {}): string {
    const phases = { setup_command: 'tf-setup', provision_command: 'tf-provision', test_command: 'tf-test', cleanup_command: 'tf-cleanup' };
    return labAgentConf(name, { server_address: this.server.url, polling_interval: 2, ...phases, ...extra }, path.join(this.sandbox.root, 'tmp/testflinger', name));
  }

  pids(): Record<string, number | undefined> {
    return Object.fromEntries([...this.sandbox.programs()].map(([name, p]) => [name, p.pid]));
  }

  /** The metrics port of each program file. */
  ports(): Record<string, string | undefined> {
    const dir = this.sandbox.paths.programDir;
    return Object.fromEntries(fs.readdirSync(dir).map((f) => [f, / -p (\d+)/.exec(fs.readFileSync(path.join(dir, f), 'utf8'))?.[1]]));
  }

  async allRunning(names: string[]): Promise<void> {
    await eventually(() => names.every((n) => this.sandbox.programs().get(n)?.state === 'RUNNING'), `${names.join(', ')} RUNNING`);
    // Agents report in once started; then they are idle and a USR1 restarts them at once.
    await eventually(() => names.every((n) => this.server.agents.get(n)?.['state'] === 'waiting'), 'agents waiting');
  }

  async stop(): Promise<void> {
    await this.sandbox.shutdown();
    await this.server.stop();
  }
}

/** When supervisord logged each program stopped (its main log, millisecond times). */
function stoppedAt(sandbox: Sandbox): Record<string, number> {
  const log = fs.readFileSync(path.join(sandbox.paths.supervisorLogDir, 'supervisord.log'), 'utf8');
  const stops: Record<string, number> = {};
  for (const [, date, time, ms, name] of log.matchAll(/^(\S+) (\S+),(\d+) \w+ stopped: (\S+) /gm)) {
    stops[name as string] = Date.parse(`${date}T${time}.${ms}`);
  }
  return stops;
}

let lab: Lab | undefined;
/** A lab stops while the next one deploys (they share nothing); all have stopped by the end. */
const stopping: Promise<void>[] = [];
afterEach(() => {
  if (lab) stopping.push(lab.stop());
  lab = undefined;
});
afterAll(() => Promise.all(stopping));

async function deploy(...agents: string[]): Promise<Lab> {
  lab = await Lab.deploy(agents);
  return lab;
}

describe('an agent host on a real supervisord', () => {
  it('deploy (install, config-changed, start): both agents RUNNING as signed-in agents, each on its own port, status active', async () => {
    const l = await deploy('agent-1', 'agent-2');
    const { sandbox, server } = l;
    const before = l.pids();
    await sandbox.hook('start');
    await sandbox.hook('update-status');
    expect(sandbox.status).toEqual({ status: 'active', message: '2 agents: 2 waiting' });
    expect(l.pids()).toEqual(before);
    // The agents signed in with the token the charm obtained; the server refused nothing.
    expect(server.requests.filter((r) => r.path === '/v1/oauth2/token')).toHaveLength(1);
    expect(server.requests.filter((r) => r.status === 401)).toEqual([]);
    expect(new Set(Object.values(l.ports())).size).toBe(2);
  });

  it('a third agent and a changed conf: the changed one restarts on its own (USR1), the third starts, the untouched one keeps its pid and every port stays', async () => {
    const l = await deploy('agent-1', 'agent-2');
    const before = l.pids();
    const portsBefore = l.ports();
    l.repo.addAgent('agent-1', l.conf('agent-1', { location: 'rack 7' })).addAgent('agent-3', l.conf('agent-3')).commit('change one, add one');
    const { results, failed, message } = await l.sandbox.action('update-configs');
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    expect(results).toMatchObject({ added: 'agent-3', changed: 'agent-1', restarted: 'agent-1', removed: '', agents: '3' });
    await eventually(() => l.pids()['agent-1'] !== before['agent-1'] && l.sandbox.programs().get('agent-1')?.state === 'RUNNING', 'agent-1 restarted');
    await l.allRunning(['agent-1', 'agent-2', 'agent-3']);
    expect(l.pids()['agent-2']).toBe(before['agent-2']);
    // The restart was the agent's own, on USR1: it said so in its log, as an operator reads it.
    const log = l.sandbox.supervisorctl('tail', '-16000', 'agent-1');
    expect(log).toMatch(/restart requested/);
    expect(log).toMatch(/exiting for a safe restart/);
    expect(l.ports()).toMatchObject(portsBefore);
  });

  it('the rendered agent environment reaches the agent: a changed location goes to the server', async () => {
    const l = await deploy('agent-1');
    l.repo.addAgent('agent-1', l.conf('agent-1', { location: 'rack 7' })).commit('move it');
    await l.sandbox.hook('config-changed');
    await eventually(() => l.server.agents.get('agent-1')?.['location'] === 'rack 7', 'new location posted');
  });

  it('a removed agent is stopped and its program file deleted; the others keep their pids and ports', async () => {
    const l = await deploy('agent-1', 'agent-2', 'agent-3');
    const before = l.pids();
    const portsBefore = l.ports();
    l.repo.removeAgent('agent-2').commit('remove agent-2');
    await l.sandbox.hook('config-changed');
    expect(fs.existsSync(l.sandbox.programFile('agent-2'))).toBe(false);
    await eventually(() => !l.sandbox.programs().has('agent-2'), 'agent-2 gone');
    expect(l.pids()).toEqual({ 'agent-1': before['agent-1'], 'agent-3': before['agent-3'] });
    expect(l.ports()).toEqual({ 'agent-1.conf': portsBefore['agent-1.conf'], 'agent-3.conf': portsBefore['agent-3.conf'] });
    await l.sandbox.hook('update-status');
    expect(l.sandbox.status).toEqual({ status: 'active', message: '2 agents: 2 waiting' });
  });

  it('a bad config-repo URL blocks the unit with the reason and leaves the agents running; fixing it unblocks', async () => {
    const l = await deploy('agent-1', 'agent-2');
    const before = l.pids();
    l.sandbox.setConfig({ 'config-repo': path.join(l.sandbox.root, 'no-such-repo') });
    await l.sandbox.hook('config-changed');
    expect(l.sandbox.status?.status).toBe('blocked');
    expect(l.sandbox.status?.message).toMatch(/^config-repo: cannot clone .*no-such-repo: /);
    expect(l.pids()).toEqual(before);
    expect(fs.existsSync(path.join(l.sandbox.root, 'srv/agent-configs/lab1/agent-1/testflinger-agent.conf'))).toBe(true);
    l.sandbox.setConfig({ 'config-repo': l.repo.url });
    await l.sandbox.hook('config-changed');
    expect(l.sandbox.status).toEqual({ status: 'active', message: '2 agents running' });
    expect(l.pids()).toEqual(before);
  });

  it('remove: every agent stops at once and its program file goes; supervisord stays', async () => {
    const l = await deploy('agent-1', 'agent-2', 'agent-3');
    await l.sandbox.hook('remove');
    expect(l.sandbox.programs()).toEqual(new Map());
    expect(fs.readdirSync(l.sandbox.paths.programDir)).toEqual([]);
    expect(l.sandbox.supervisorctl('pid')).toMatch(/^\d+\n$/);
    // At once: all three signalled in one call, so they stop within milliseconds of each other.
    // supervisorctl's update stops removed groups one after another (~1.7 s apart), and even
    // stopProcessGroup in one multicall stops one group per turn of supervisord's loop (~1 s).
    const stops = stoppedAt(l.sandbox);
    expect(Object.keys(stops).sort()).toEqual(['agent-1', 'agent-2', 'agent-3']);
    expect(Math.max(...Object.values(stops)) - Math.min(...Object.values(stops))).toBeLessThan(500);
  });

  it('a job runs to completion under supervisord, through the rendered phase scripts and the fake device connector', async () => {
    const { server } = await deploy('agent-1');
    const id = server.submitJob({ job_queue: 'agent-1-queue', provision_data: { distro: 'noble' }, test_data: { test_cmds: 'echo "hello from $DEVICE_IP"' } });
    await eventually(() => server.resultView(id)?.['job_state'] === 'complete', 'job complete', 30000);
    const result = server.resultView(id) as Record<string, unknown>;
    expect(result).toMatchObject({ setup_status: 0, provision_status: 0, test_status: 0, cleanup_status: 0 });
    expect(result['provision_output']).toMatch(/fake device 127\.0\.0\.1\] would provision "noble"/);
    expect(result['test_output']).toMatch(/hello from 127\.0\.0\.1/);
  });
});
