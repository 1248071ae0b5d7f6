/**
 * Job isolation on a unit, for real (tests/helpers/unithost.ts: real users, real cgroups,
 * bubblewrap, an sshd "device", all in private namespaces as root). Two agents, set up as the
 * charm must (docs/isolation.md): one system user each, the lab key readable through a group,
 * run by Debian's supervisord from program files that start them through
 * tf-cmd-scripts/testflinger-agent-contained in a cgroup of their own, the test sandbox on. Jobs on agent A try to reach agent B, the host and the future, and fail; A's test
 * still reaches its device over ssh.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { eventually, repoRoot } from '../helpers/tmp';
import { UnitHost, describeOnUnitHost } from '../helpers/unithost';

const SERVER = 'http://127.0.0.1:8000';
const DEVICE_PORT = 2222;
const AGENTS = ['agent-a', 'agent-b'] as const;
type AgentName = (typeof AGENTS)[number];
/** Unique per run: cgroups are not namespaced here, and other test runs may share the machine. */
const CGROUP_PREFIX = `testflinger-test-${process.pid}`;

let host: UnitHost;

const userOf = (a: AgentName) => `tf-${a}`;
const homeOf = (a: AgentName) => `/var/lib/testflinger-agent/home/${a}`;
const stateOf = (a: AgentName) => `/srv/testflinger/${a}`;

/** The test phase runs the job's test_cmds from testflinger.json, as the connector does. */
const RUN_TEST_CMDS = `sh -c "$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync("testflinger.json", "utf8")).test_data.test_cmds)')"`;

function confOf(a: AgentName): string {
  return JSON.stringify({
    agent_id: a,
    server_address: SERVER,
    job_queues: [`${a}-q`],
    polling_interval: 0.2,
    execution_basedir: `${stateOf(a)}/run`,
    logging_basedir: `${stateOf(a)}/logs`,
    results_basedir: `${stateOf(a)}/results`,
    setup_command: 'true',
    test_command: RUN_TEST_CMDS,
    cleanup_command: 'true',
  });
}

/** What the charm must do for each agent (users, group, homes, the key, state dirs), as a script. */
const CHARM_SETUP = `set -eu
groupadd --system testflinger-agents
mkdir -p /var/lib/testflinger-agent/home /srv/testflinger
ssh-keygen -q -t ed25519 -N '' -C lab -f /run/unithost/lab_key
printf 'Host *\\n  StrictHostKeyChecking no\\n  UserKnownHostsFile /dev/null\\n  LogLevel QUIET\\n' >/run/unithost/ssh_config
for a in ${AGENTS.join(' ')}; do
  home=/var/lib/testflinger-agent/home/$a
  useradd --system --user-group --groups testflinger-agents --home-dir "$home" --no-create-home --shell /bin/bash "tf-$a"
  # Root's, so the agent's user cannot swap ~/.ssh for a link the charm (root) would then follow.
  install -d -o root -g root -m 0755 "$home"
  install -d -o root -g root -m 0755 "$home/.ssh"
  install -o root -g testflinger-agents -m 0640 /run/unithost/lab_key "$home/.ssh/id_rsa"
  install -o root -g root -m 0644 /run/unithost/lab_key.pub "$home/.ssh/id_rsa.pub"
  install -o "tf-$a" -g "tf-$a" -m 0644 /run/unithost/ssh_config "$home/.ssh/config"
  install -d -o "tf-$a" -g "tf-$a" -m 0700 "/srv/testflinger/$a"
  mkdir -p "/srv/agent-configs/$a"
done
`;

/** A call to the dev server inside the namespace (its loopback is the namespace's own); JSON answers parsed. */
async function api(method: 'GET' | 'POST', route: string, body?: unknown): Promise<unknown> {
  const script = `fetch('${SERVER}${route}', { method: '${method}', headers: { 'content-type': 'application/json' }, ...(process.argv[1] ? { body: process.argv[1] } : {}) })
    .then((r) => r.text()).then((t) => process.stdout.write(t))`;
  const text = await host.check(['node', '-e', script, ...(body === undefined ? [] : [JSON.stringify(body)])]);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function submit(a: AgentName, testCmds: string): Promise<string> {
  return ((await api('POST', '/v1/job', { job_queue: `${a}-q`, test_data: { test_cmds: testCmds } })) as { job_id: string }).job_id;
}

async function result(id: string): Promise<Record<string, unknown>> {
  return (await api('GET', `/v1/result/${id}`)) as Record<string, unknown>;
}

/** The job's test output once it ended (cleanup reported). */
async function testOutput(id: string): Promise<string> {
  const view = await eventually(async () => {
    const r = await result(id);
    return r['cleanup_status'] !== undefined ? r : undefined;
  }, `job ${id} cleaned up`, 30_000);
  return String(view['test_output']);
}

/** The agent's pid as the namespace numbers it (its lock's pid file). */
async function agentPid(a: AgentName): Promise<number> {
  return Number((await host.readFile(`${stateOf(a)}/logs/${a}.pid`)).trim());
}

async function alive(pid: number): Promise<boolean> {
  return (await host.exec(['test', '-d', `/proc/${pid}`])).exitCode === 0;
}

/** Pids (as this machine numbers them: the unit host's namespace is nested in ours) of processes with `text` in argv. */
function processesWith(text: string): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e) && argvOf(e).includes(text)).map(Number);
}

function argvOf(pid: string): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/**
 * The program file the charm must write for an agent: no user= line; the root wrapper puts the
 * agent in its cgroup and becomes its user. Values here need no quoting (checked by the charm).
 */
function programFile(a: AgentName): string {
  const env = {
    HOME: homeOf(a),
    USER: userOf(a),
    PATH: '/usr/local/bin:/usr/bin:/bin',
    TESTFLINGER_TEST_SANDBOX: 'on',
    TESTFLINGER_AGENT_LOCK_SCOPE: '/',
    TESTFLINGER_AGENT_DIR: `/srv/agent-configs/${a}`,
  };
  const command = [
    path.join(repoRoot, 'tf-cmd-scripts', 'testflinger-agent-contained'), userOf(a), `${CGROUP_PREFIX}-${a}`,
    process.execPath, path.join(repoRoot, 'dist', 'testflinger-agent.js'),
    '-c', `/srv/agent-configs/${a}/testflinger-agent.conf`, '--token-file', '/var/lib/testflinger-agent/refresh_token',
  ].join(' ');
  return [
    `[program:${a}]`,
    `command=${command}`,
    `directory=${homeOf(a)}`,
    'autostart=true', 'autorestart=unexpected', 'exitcodes=2,3', 'startsecs=1', 'startretries=3',
    'stopsignal=TERM', 'stopwaitsecs=60', 'redirect_stderr=true',
    `environment=${Object.entries(env).map(([k, v]) => `${k}="${v}"`).join(',')}`,
    '',
  ].join('\n');
}

/** Under Debian's supervisord, from the program file the charm must write. */
async function startAgents(): Promise<void> {
  for (const a of AGENTS) {
    await host.writeFile(`/srv/agent-configs/${a}/testflinger-agent.conf`, confOf(a));
    await host.writeFile(`/etc/supervisor/conf.d/${a}.conf`, programFile(a));
  }
  await host.check(['supervisord', '-c', '/etc/supervisor/supervisord.conf']);
  await eventually(async () => {
    const programs = await host.programs();
    return AGENTS.every((a) => programs.get(a)?.state === 'RUNNING');
  }, 'both agents RUNNING under supervisord');
}

/** Removes this run's cgroups (each agent's and any phase cgroup left in it) once their processes are gone. */
function removeCgroups(): void {
  const mount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => / - cgroup2 /.test(l))?.split(' ')[4];
  if (!mount) return;
  for (const a of AGENTS) {
    const dir = path.join(mount, `${CGROUP_PREFIX}-${a}`);
    if (!fs.existsSync(dir)) continue;
    for (const child of fs.readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) fs.rmdirSync(path.join(dir, child.name));
    fs.rmdirSync(dir);
  }
}

describeOnUnitHost('job isolation on a unit: per-agent users, cgroups, the test sandbox', () => {
  let jobOnB: string;

  beforeAll(async () => {
    host = await UnitHost.start();
    await host.devServer({ port: 8000 });
    await host.check(['sh', '-c', CHARM_SETUP]);
    await host.sshd(DEVICE_PORT, await host.readFile('/run/unithost/lab_key.pub'));
    await startAgents();
    await eventually(async () => {
      const agents = (await api('GET', '/v1/agents/data')) as { name: string; state: string }[];
      return AGENTS.every((a) => agents.some((d) => d.name === a && d.state === 'waiting'));
    }, 'both agents waiting on the server', 30_000);
    // B is busy while A's jobs try to reach it.
    jobOnB = await submit('agent-b', 'echo b-secret >b-results.txt; sleep 60');
    await eventually(async () => (await result(jobOnB))['job_state'] === 'test', "B's job in its test phase", 30_000);
  }, 90_000);

  afterAll(async () => {
    await host?.stop();
    removeCgroups();
  });

  it('each agent runs as its own user, in its own cgroup, as supervisord reports it', async () => {
    const programs = await host.programs();
    for (const a of AGENTS) {
      const pid = await agentPid(a);
      expect(programs.get(a)?.pid).toBe(pid);
      const { uid } = await host.userIds(userOf(a));
      expect({ a, uids: await host.processUids(pid) }).toEqual({ a, uids: [uid, uid, uid, uid] });
      expect(await host.readFile(`/proc/${pid}/cgroup`)).toMatch(new RegExp(`^0::.*/${CGROUP_PREFIX}-${a}$`, 'm'));
    }
  });

  it("a job on A can neither read nor write B's run directory", async () => {
    const bRun = `${stateOf('agent-b')}/run/${jobOnB}`;
    const out = await testOutput(
      await submit('agent-a', `cat ${bRun}/testflinger.json; echo "read=$?"; touch ${bRun}/planted; echo "write=$?"; ls ${stateOf('agent-b')}/run; echo "list=$?"`),
    );
    expect(out).toMatch(/read=[1-9]/);
    expect(out).toMatch(/write=[1-9]/);
    expect(out).toMatch(/list=[1-9]/);
    expect(out).not.toMatch(/b-secret|"job_id"/);
    expect(await host.exists(`${bRun}/planted`)).toBe(false);
    expect((await host.readFile(`${bRun}/b-results.txt`)).trim()).toBe('b-secret');
  });

  it("a job on A cannot signal B's agent, not even with kill -9 -1", async () => {
    const bAgent = await agentPid('agent-b');
    const out = await testOutput(await submit('agent-a', `kill -9 ${bAgent}; echo "kill=$?"; kill -9 -1`));
    expect(out).toMatch(/kill=[1-9]/);
    expect(await alive(bAgent)).toBe(true);
    expect(await alive(await agentPid('agent-a'))).toBe(true);
    expect((await result(jobOnB))['job_state']).toBe('test');
  });

  it('a job cannot write /usr/local/bin or ~/.ssh; what it writes in ~ is gone after the phase', async () => {
    const configBefore = await host.readFile(`${homeOf('agent-a')}/.ssh/config`);
    const out = await testOutput(
      await submit(
        'agent-a',
        'touch /usr/local/bin/planted; echo "bin=$?"; echo "ProxyCommand evil" >>~/.ssh/config; echo "config=$?"; rm -f ~/.ssh/id_rsa; echo "key=$?"; touch ~/.planted; echo "home=$?"',
      ),
    );
    expect(out).toMatch(/bin=[1-9]/);
    expect(out).toMatch(/config=[1-9]/);
    expect(out).toMatch(/key=[1-9]/);
    expect(out).toMatch(/home=0/);
    expect(await host.exists('/usr/local/bin/planted')).toBe(false);
    expect(await host.readFile(`${homeOf('agent-a')}/.ssh/config`)).toBe(configBefore);
    expect(await host.exists(`${homeOf('agent-a')}/.ssh/id_rsa`)).toBe(true);
    expect(await host.exists(`${homeOf('agent-a')}/.planted`)).toBe(false);
  });

  it('a daemon a job leaves does not survive its phase, and the job log names it', async () => {
    const sleepArg = `3000.${parseInt(randomBytes(4).toString('hex'), 16)}`;
    const out = await testOutput(await submit('agent-a', `setsid sh -c 'trap "" TERM; exec sleep ${sleepArg}' </dev/null >/dev/null 2>&1 & sleep 0.5; echo started`));
    expect(out).toMatch(/started/);
    // Named as it is when the phase ends: `sleep` once it exec'd (a loaded machine may catch it before).
    expect(out).toMatch(/cleanup: 1 process left by the test phase was killed: (sleep|sh|setsid)\(\d+\)/);
    await eventually(() => processesWith(sleepArg).length === 0, 'the daemon gone', 5000);
  });

  it('a cancelled test phase leaves no process behind', async () => {
    const sleepArg = `3000.${parseInt(randomBytes(4).toString('hex'), 16)}`;
    const id = await submit('agent-a', `setsid sh -c 'trap "" TERM; exec sleep ${sleepArg}' </dev/null >/dev/null 2>&1 & sleep ${sleepArg}`);
    await eventually(() => processesWith(sleepArg).length === 2, 'the phase and its daemon running', 30_000);
    await api('POST', `/v1/job/${id}/action`, { action: 'cancel' });
    await testOutput(id);
    expect((await result(id))['test_status']).toBe(137);
    await eventually(() => processesWith(sleepArg).length === 0, 'every process of the phase gone', 5000);
  });

  it("A's own test still reaches its device over ssh with the lab key", async () => {
    const out = await testOutput(await submit('agent-a', `ssh -p ${DEVICE_PORT} root@127.0.0.1 echo device-says-hi; echo "ssh=$?"`));
    expect(out).toMatch(/^device-says-hi$/m);
    expect(out).toMatch(/ssh=0/);
  });
});
