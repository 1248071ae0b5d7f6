/**
 * Upstream-shaped confs run unchanged under per-agent users (docs/isolation.md, "Basedirs a conf
 * names"): agents deployed by the charm's install hook (dispatch, real users, Debian's
 * supervisord, a dev server) with no basedirs, upstream's defaults written out, a shared parent
 * in /tmp, and upstream's reference under /home/ubuntu (with a `ubuntu` user whose home is 0750,
 * and without one). Each agent runs a job to completion as its own user, in the directories its
 * conf names, 0700 and its user's; two confs naming one directory are refused, naming both,
 * while the others run. Then root's walk itself, on this machine's /tmp (root, no unit host):
 * what it refuses on the way and what it makes.
 */
import * as fs from 'node:fs';
import { walkBasedir, type BasedirOwners } from '../../src/charm/basedirs';
import { eventually, tempDir } from '../helpers/tmp';
import { UnitHost, describeOnUnitHost, labCharmConfig } from '../helpers/unithost';

const SERVER = 'http://127.0.0.1:8000';
type Basedirs = { run: string; logs: string; results: string };

/** The test phase says who runs it and where. */
const TEST_COMMAND = 'sh -c \'echo "user=$(id -un) dir=$(pwd)"\'';

const under = (base: string): Basedirs => ({ run: `${base}/run`, logs: `${base}/logs`, results: `${base}/results` });
const UPSTREAM_DEFAULTS = under('/tmp/testflinger');
const stateOf = (agent: string) => under(`/srv/testflinger/${agent}`);

/** An agent's conf; `basedirs` written out as upstream's keys, none when undefined. */
function confOf(agent: string, basedirs?: Partial<Basedirs>): string {
  const keys = basedirs ? { execution_basedir: basedirs.run, logging_basedir: basedirs.logs, results_basedir: basedirs.results } : {};
  return JSON.stringify({ agent_id: agent, server_address: SERVER, job_queues: [`${agent}-q`], polling_interval: 0.2, setup_command: 'true', test_command: TEST_COMMAND, cleanup_command: 'true', ...keys });
}

/** A unit host with the lab installed; `before`: what the machine has before the install hook. */
async function deploy(agents: Record<string, string>, options: { ubuntuUser: boolean; before?: (host: UnitHost) => Promise<unknown> }): Promise<UnitHost> {
  const { config, keep } = labCharmConfig(agents);
  const host = await UnitHost.start({ config, keep });
  if (options.ubuntuUser) await host.addLoginUser('ubuntu');
  await options.before?.(host);
  await host.devServer({ port: 8000 });
  await host.hook('install');
  return host;
}

/** Submits a job to the agent and returns its test output once it ended (cleanup reported). */
async function jobOutput(host: UnitHost, agent: string): Promise<string> {
  const { job_id: id } = (await host.api(SERVER, 'POST', '/v1/job', { job_queue: `${agent}-q`, test_data: { test_cmds: 'true' } })) as { job_id: string };
  const view = await eventually(async () => {
    const r = (await host.api(SERVER, 'GET', `/v1/result/${id}`)) as Record<string, unknown>;
    return r['cleanup_status'] !== undefined ? r : undefined;
  }, `${agent}'s job ${id} cleaned up`, 60_000);
  return String(view['test_output']);
}

/** Each agent's job ran as its user in its run directory, and each of its basedirs is its user's, 0700. */
async function expectOwnDirs(host: UnitHost, lab: Record<string, Basedirs>): Promise<void> {
  for (const [agent, dirs] of Object.entries(lab)) {
    const out = await jobOutput(host, agent);
    expect({ agent, out }).toEqual({ agent, out: expect.stringMatching(new RegExp(`^user=tf-${agent} dir=${dirs.run}/[0-9a-f-]+$`, 'm')) });
    const { uid, gid } = await host.userIds(`tf-${agent}`);
    for (const dir of Object.values(dirs)) expect({ dir, ...(await host.stat(dir)) }).toEqual({ dir, uid, gid, mode: 0o700, type: 'directory' });
    // The agent's own pid file: it writes where its conf says.
    expect(await host.exists(`${dirs.logs}/${agent}.pid`)).toBe(true);
  }
}

describeOnUnitHost("a lab's upstream-shaped confs, with a ubuntu user (home 0750)", () => {
  let host: UnitHost;
  const lab: Record<string, Basedirs> = {
    plain: stateOf('plain'),
    'upstream-1': stateOf('upstream-1'),
    'upstream-2': stateOf('upstream-2'),
    'shared-1': under('/tmp/tfa/shared-1'),
    'shared-2': under('/tmp/tfa/shared-2'),
    'home-1': under('/home/ubuntu/testflinger/home-1'),
    'home-2': under('/home/ubuntu/testflinger/home-2'),
  };

  beforeAll(async () => {
    host = await deploy(
      {
        plain: confOf('plain'),
        'upstream-1': confOf('upstream-1', UPSTREAM_DEFAULTS),
        'upstream-2': confOf('upstream-2', UPSTREAM_DEFAULTS),
        'shared-1': confOf('shared-1', lab['shared-1']),
        'shared-2': confOf('shared-2', lab['shared-2']),
        'home-1': confOf('home-1', lab['home-1']),
        'home-2': confOf('home-2', lab['home-2']),
        'clash-1': confOf('clash-1', { run: '/tmp/clash/run' }),
        'clash-2': confOf('clash-2', { run: '/tmp/clash/run' }),
        outside: confOf('outside', { logs: '/etc/testflinger/logs' }),
        taken: confOf('taken', { results: '/tmp/taken/results' }),
      },
      // Somebody else's directory where taken's results would go.
      { ubuntuUser: true, before: (h) => h.check(['sh', '-c', 'mkdir -p /tmp/taken/results && chown nobody /tmp/taken/results']) },
    );
  }, 120_000);

  afterAll(async () => {
    await host?.stop();
  });

  it('every agent runs a job to completion as its own user, in the directories its conf names (upstream defaults: its own state dir)', async () => {
    await expectOwnDirs(host, lab);
  }, 300_000);

  it("two confs naming one directory are both refused, each naming the other, as are a basedir out of bounds and one that is somebody else's; the lab's other agents run", async () => {
    const logs = host.unit.state().logs.map((l) => l.message);
    expect(logs).toContain(`skipping agent "clash-1": "execution_basedir /tmp/clash/run: is also clash-2's execution_basedir"`);
    expect(logs).toContain(`skipping agent "clash-2": "execution_basedir /tmp/clash/run: is also clash-1's execution_basedir"`);
    expect(logs).toContain(
      `skipping agent "outside": "logging_basedir /etc/testflinger/logs: must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>, where a directory an agent owns runs nothing of root or another user"`,
    );
    expect(logs).toContain(`skipping agent "taken": "results_basedir /tmp/taken/results: /tmp/taken/results exists, owned by nobody; it must be tf-taken's"`);
    // The install hook leaves the agents starting; update-status confirms how they settled.
    await host.hook('update-status');
    expect(host.status).toEqual({ status: 'blocked', message: '7 agents running; bad conf: clash-1, clash-2, outside and 1 more (see juju debug-log)' });
    const programs = await host.programs();
    expect([...programs.keys()].sort()).toEqual(Object.keys(lab).sort());
    expect(await host.exists('/tmp/clash')).toBe(false);
    expect(await host.exists('/etc/testflinger')).toBe(false);
  });

  it("the directories on the way are root's; ubuntu's home stays its own, 0750, passable (not readable) by the agents it leads to", async () => {
    for (const dir of ['/tmp/tfa', '/tmp/tfa/shared-1', '/home/ubuntu/testflinger', '/home/ubuntu/testflinger/home-1']) {
      expect({ dir, ...(await host.stat(dir)) }).toEqual({ dir, uid: 0, gid: 0, mode: 0o755, type: 'directory' });
    }
    const ubuntu = await host.userIds('ubuntu');
    expect(await host.stat('/home/ubuntu')).toMatchObject({ uid: ubuntu.uid, gid: ubuntu.gid, mode: 0o750 });
    const acl = await host.check(['getfacl', '--omit-header', '--numeric', '/home/ubuntu']);
    const { uid: home1 } = await host.userIds('tf-home-1');
    expect(acl).toContain(`user:${home1}:--x`);
    expect((await host.execAs('tf-home-1', ['ls', '/home/ubuntu'])).exitCode).not.toBe(0);
    // Agents that need not pass are not let through.
    expect((await host.execAs('tf-shared-1', ['ls', '/home/ubuntu/testflinger'])).exitCode).not.toBe(0);
  });

  it("no agent can read another's directories or move them out of the way", async () => {
    expect((await host.execAs('tf-shared-1', ['ls', '/tmp/tfa/shared-2/run'])).exitCode).not.toBe(0);
    expect((await host.execAs('tf-shared-1', ['mv', '/tmp/tfa/shared-2', '/tmp/tfa/mine'])).exitCode).not.toBe(0);
    expect((await host.execAs('tf-home-1', ['mv', '/home/ubuntu/testflinger/home-2', '/home/ubuntu/testflinger/mine'])).exitCode).not.toBe(0);
    expect(await host.exists('/tmp/tfa/shared-2/run')).toBe(true);
  });

  it('after a boot empties /tmp, systemd-tmpfiles makes the shared parent root\'s and each agent\'s own again, before the agents start', async () => {
    const tmpfiles = '/etc/tmpfiles.d/testflinger-agent-basedirs.conf';
    expect(await host.readFile(tmpfiles)).toContain('d /tmp/tfa/shared-1/run 0700 tf-shared-1 tf-shared-1 -\n');
    const { uid } = await host.userIds('tf-shared-2');
    await host.check(['sh', '-c', 'mkdir -p /run/unithost/moved && mv /tmp/tfa /run/unithost/moved/ && systemd-tmpfiles --create "$0"', tmpfiles]);
    try {
      expect(await host.stat('/tmp/tfa')).toMatchObject({ uid: 0, mode: 0o755 });
      expect(await host.stat('/tmp/tfa/shared-2/logs')).toMatchObject({ uid, mode: 0o700 });
    } finally {
      await host.check(['sh', '-c', 'rm -rf /tmp/tfa && mv /run/unithost/moved/tfa /tmp/']);
    }
  });

  it("an agent whose conf writes out upstream's defaults logs where this host keeps them", async () => {
    const out = await host.check(['sh', '-c', 'cat /var/log/supervisor/upstream-1-stdout*']);
    expect(out).toContain(
      "basedirs: upstream's shared defaults are this agent's own here (one user per agent): execution_basedir /tmp/testflinger/run -> /srv/testflinger/upstream-1/run",
    );
    expect(await host.exists('/tmp/testflinger')).toBe(false);
  });
});

describeOnUnitHost("upstream's reference basedirs under /home/ubuntu, on a machine with no ubuntu user", () => {
  let host: UnitHost;
  const lab: Record<string, Basedirs> = {
    'home-1': under('/home/ubuntu/testflinger/home-1'),
    'home-2': under('/home/ubuntu/testflinger/home-2'),
  };

  beforeAll(async () => {
    host = await deploy({ 'home-1': confOf('home-1', lab['home-1']), 'home-2': confOf('home-2', lab['home-2']) }, { ubuntuUser: false });
  }, 120_000);

  afterAll(async () => {
    await host?.stop();
  });

  it("both agents run a job as their own users in their own directories; the path to them is root's", async () => {
    await expectOwnDirs(host, lab);
    await host.hook('update-status');
    expect(host.status).toEqual({ status: 'active', message: '2 agents: 2 waiting' });
    for (const dir of ['/home/ubuntu', '/home/ubuntu/testflinger']) expect({ dir, ...(await host.stat(dir)) }).toEqual({ dir, uid: 0, gid: 0, mode: 0o755, type: 'directory' });
  }, 120_000);
});

/** Root's walk to a basedir, on this machine (as root): ids are made up, no user needs to exist. */
describeOnUnitHost("root's walk to an agent's basedir: no link followed, nothing of another agent's on the way", () => {
  const AGENT = { uid: 41001, gid: 41001 };
  const OTHER_AGENT = 41002;
  const owners: BasedirOwners = { ownName: 'tf-agent-a', own: AGENT, agentUids: new Set([AGENT.uid, OTHER_AGENT]), nameOf: (uid) => `uid ${uid}` };
  let base: string;
  const make = (dir: string, grantTraverse?: (p: string) => Promise<void>) => walkBasedir(dir, owners, { make: true, grantTraverse });
  const modeOf = (p: string) => fs.lstatSync(p).mode & 0o7777;

  beforeEach(() => {
    base = tempDir('basedir-walk');
    fs.chmodSync(base, 0o755);
  });

  it("makes the missing directories root's 0755 and the leaf the agent's 0700; an existing leaf of the agent's is tightened", async () => {
    await make(`${base}/tfa/agent-a/run`);
    expect([fs.statSync(`${base}/tfa`).uid, modeOf(`${base}/tfa`), fs.statSync(`${base}/tfa/agent-a`).uid, modeOf(`${base}/tfa/agent-a`)]).toEqual([0, 0o755, 0, 0o755]);
    expect(fs.statSync(`${base}/tfa/agent-a/run`)).toMatchObject({ uid: AGENT.uid, gid: AGENT.gid });
    expect(modeOf(`${base}/tfa/agent-a/run`)).toBe(0o700);
    fs.chmodSync(`${base}/tfa/agent-a/run`, 0o755);
    await make(`${base}/tfa/agent-a/run`);
    expect(modeOf(`${base}/tfa/agent-a/run`)).toBe(0o700);
  });

  it('refuses a link on the way or as the leaf, and makes nothing where it points', async () => {
    const elsewhere = tempDir('basedir-elsewhere');
    fs.symlinkSync(elsewhere, `${base}/tfa`);
    await expect(make(`${base}/tfa/agent-a/run`)).rejects.toThrow(`${base}/tfa is a symbolic link; it must be a directory`);
    fs.mkdirSync(`${base}/x`);
    fs.symlinkSync(elsewhere, `${base}/x/run`);
    await expect(make(`${base}/x/run`)).rejects.toThrow(`${base}/x/run is a symbolic link`);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
  });

  it('refuses a file on the way', async () => {
    fs.writeFileSync(`${base}/tfa`, '');
    await expect(make(`${base}/tfa/run`)).rejects.toThrow(`${base}/tfa is not a directory`);
  });

  it("refuses a directory on the way that is another agent's, and a leaf that is not the agent's, naming the owner", async () => {
    fs.mkdirSync(`${base}/tfa/agent-a`, { recursive: true });
    fs.chownSync(`${base}/tfa`, OTHER_AGENT, OTHER_AGENT);
    await expect(make(`${base}/tfa/agent-a/run`)).rejects.toThrow(`${base}/tfa is owned by the agent user uid ${OTHER_AGENT}`);
    fs.chownSync(`${base}/tfa`, 0, 0);
    fs.chownSync(`${base}/tfa/agent-a`, OTHER_AGENT, OTHER_AGENT);
    await expect(make(`${base}/tfa/agent-a`)).rejects.toThrow(`${base}/tfa/agent-a exists, owned by uid ${OTHER_AGENT}; it must be tf-agent-a's`);
    expect(fs.statSync(`${base}/tfa/agent-a`).uid).toBe(OTHER_AGENT);
  });

  it('refuses a directory on the way that others may write (not sticky); a sticky one, like /tmp, is passed', async () => {
    fs.mkdirSync(`${base}/open`, { mode: 0o777 });
    fs.chmodSync(`${base}/open`, 0o777);
    await expect(make(`${base}/open/run`)).rejects.toThrow(`${base}/open is writable by others than its owner (mode 777, not sticky)`);
    fs.chmodSync(`${base}/open`, 0o1777);
    await make(`${base}/open/run`);
    expect(fs.statSync(`${base}/open/run`).uid).toBe(AGENT.uid);
  });

  it('only checks, changing nothing, without make', async () => {
    await walkBasedir(`${base}/tfa/agent-a/run`, owners, { make: false });
    expect(fs.readdirSync(base)).toEqual([]);
  });

  it('lets the agent through a directory others may not pass, by the open directory itself', async () => {
    fs.mkdirSync(`${base}/home/ubuntu`, { recursive: true });
    fs.chmodSync(`${base}/home/ubuntu`, 0o750);
    const granted: string[] = [];
    await make(`${base}/home/ubuntu/testflinger/run`, async (p) => {
      granted.push(fs.realpathSync(p));
    });
    expect(granted).toEqual([`${base}/home/ubuntu`]);
  });
});
