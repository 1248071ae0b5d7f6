/**
 * Job isolation on a unit, for real (tests/helpers/unithost.ts: real users, real cgroups,
 * bubblewrap, an sshd "device", all in private namespaces as root), with two agents deployed
 * **by the charm** (its install hook through dispatch): one system user each, the lab key
 * readable through the agents' group, started by Debian's supervisord through the charm's
 * wrapper in a cgroup of their own, the test sandbox on (the option's default), run and result
 * directories in the per-agent defaults the charm gives them. Jobs on agent A try to reach
 * agent B, the host and the future, and fail; A's test still reaches its device over ssh.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { RUN_TEST_CMDS } from '../helpers/phase-script';
import { eventually } from '../helpers/tmp';
import { UnitHost, describeOnUnitHost, labCharmConfig } from '../helpers/unithost';
import { expectStartingOrRunning } from '../helpers/status';

const SERVER = 'http://127.0.0.1:8000';
/** The charm's agent-max-processes here: low enough for a fork flood to reach it quickly. */
const MAX_PROCESSES = 256;
const DEVICE_PORT = 2222;
const AGENTS = ['agent-a', 'agent-b'] as const;
type AgentName = (typeof AGENTS)[number];

let host: UnitHost;

const homeOf = (a: AgentName) => `/var/lib/testflinger-agent/home/${a}`;
/** The charm's default for an agent whose conf names no basedirs. */
const stateOf = (a: AgentName) => `/srv/testflinger/${a}`;


/** No basedirs: the charm's per-agent defaults must keep the two agents apart. */
function confOf(a: AgentName): string {
  return JSON.stringify({
    agent_id: a,
    server_address: SERVER,
    job_queues: [`${a}-q`],
    polling_interval: 0.2,
    setup_command: 'true',
    test_command: RUN_TEST_CMDS,
    cleanup_command: 'true',
  });
}

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

describeOnUnitHost('job isolation on a unit: per-agent users, cgroups, the test sandbox', () => {
  let jobOnB: string;

  beforeAll(async () => {
    const lab = labCharmConfig(Object.fromEntries(AGENTS.map((a) => [a, confOf(a)])));
    const { keep, publicKey } = lab;
    const config = { ...lab.config, 'agent-max-processes': MAX_PROCESSES };
    host = await UnitHost.start({ config, keep });
    await host.devServer({ port: 8000 });
    await host.sshd(DEVICE_PORT, publicKey);
    await host.hook('install');
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
  });

  it('each agent runs as its own user, in its own cgroup, as supervisord reports it; the unit says they started', async () => {
    // supervisord names a program's pid once it is RUNNING (startsecs after the start); the agent
    // may have reported in to the server before that.
    const programs = await eventually(async () => {
      const now = await host.programs();
      return AGENTS.every((a) => now.get(a)?.state === 'RUNNING') ? now : undefined;
    }, 'both agents RUNNING');
    for (const a of AGENTS) {
      const pid = await agentPid(a);
      expect(programs.get(a)?.pid).toBe(pid);
      const { uid } = await host.userIds(`tf-${a}`);
      expect({ a, uids: await host.processUids(pid) }).toEqual({ a, uids: [uid, uid, uid, uid] });
      expect(await host.readFile(`/proc/${pid}/cgroup`)).toMatch(new RegExp(`^0::.*/supervisor\\.service/${a}$`, 'm'));
    }
    // As the install hook left it: the agents it started, not waited for.
    expectStartingOrRunning(host.status, 2);
    // The cgroup the charm's wrapper made is the agent's to use: no fallback.
    expect(await host.check(['sh', '-c', 'cat /var/log/supervisor/agent-a-stdout*'])).toMatch(/containment: each phase runs in its own cgroup under "[^"]*\/supervisor\.service\/agent-a"/);
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

  it("links a job leaves in its run directory (to ~/.ssh/config, to B's marker) and FIFOs there do not steer A's agent", async () => {
    const sshConfig = `${homeOf('agent-a')}/.ssh/config`;
    const configBefore = await host.readFile(sshConfig);
    const bMarker = '/tmp/TESTFLINGER-DEVICE-OFFLINE-agent-b';
    await testOutput(
      await submit(
        'agent-a',
        [
          'ln -sf "$HOME/.ssh/config" test.log',
          `echo 'Match exec "touch /tmp/planted-by-ssh"'`,
          'ln -sf "$HOME/.ssh/config" cleanup.log',
          `rm -f testflinger-outcome.json; ln -s ${bMarker} testflinger-outcome.json`,
        ].join('; '),
      ),
    );
    expect(await host.readFile(sshConfig)).toBe(configBefore);
    expect(await host.exists(bMarker)).toBe(false);
    // A FIFO at each name the agent opens after the test phase: the job still ends, the agent goes on.
    await testOutput(await submit('agent-a', 'mkfifo device-info.json cleanup.log cleanup-serial.log; rm testflinger-outcome.json; mkfifo testflinger-outcome.json; mkdir artifacts; mkfifo artifacts/pipe'));
    expect(await testOutput(await submit('agent-a', 'echo still-taking-jobs'))).toMatch(/^still-taking-jobs$/m);
  });

  it('a job in the sandbox cannot make a user namespace of its own (bwrap --disable-userns)', async () => {
    const out = await testOutput(await submit('agent-a', 'unshare -Ur true; echo "userns=$?"; unshare -U true; echo "plain=$?"'));
    expect(out).toMatch(/^userns=[1-9]/m);
    expect(out).toMatch(/^plain=[1-9]/m);
  });

  it("a fork flood on A stops at A's process limit, and its output says so, while B takes a job and runs it", async () => {
    // B is free again (its job from the start is cancelled): it must take a job during A's flood.
    await api('POST', `/v1/job/${jobOnB}/action`, { action: 'cancel' });
    await testOutput(jobOnB);
    const flood = `sh -c 'i=0; while [ $i -lt 2000 ]; do sleep 300 & i=$((i+1)); done; echo "spawned=$i"'; exec sleep 20`;
    const flooding = await submit('agent-a', flood);
    await eventually(async () => (await host.pidsOf('tf-agent-a')).length >= MAX_PROCESSES / 2, "A's flood under way", 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    const held = (await host.pidsOf('tf-agent-a')).length;
    const bOut = await testOutput(await submit('agent-b', 'echo b-ran'));
    expect(bOut).toMatch(/^b-ran$/m);
    expect((await result(flooding))['job_state']).toBe('test');
    expect(held).toBeLessThanOrEqual(MAX_PROCESSES);
    const aOut = await testOutput(flooding);
    expect(aOut).not.toMatch(/spawned=2000/);
    expect(aOut).toMatch(new RegExp(`NOTE: this phase hit its process limit \\(${MAX_PROCESSES} processes for this agent, the charm's agent-max-processes\\)`));
    // The wrapper set it on the agent, hard: its own limit is the charm's.
    expect(await host.readFile(`/proc/${await agentPid('agent-a')}/limits`)).toMatch(new RegExp(`^Max processes\\s+${MAX_PROCESSES}\\s+${MAX_PROCESSES}\\s`, 'm'));
  }, 120_000);

  it("a job on A binding the abstract name B's lock once had does not keep B from restarting; a second B is still refused", async () => {
    const bAgent = await agentPid('agent-b');
    // What an earlier version bound: \0testflinger-agent/<sha256(scope \0 agent_id)>, the scope from B's program file.
    const bEnv = (await host.readFile(`/proc/${bAgent}/environ`)).split('\0').filter(Boolean);
    const scope = bEnv.find((e) => e.startsWith('TESTFLINGER_AGENT_LOCK_SCOPE='))?.split('=')[1] ?? '';
    const oldName = `testflinger-agent/${createHash('sha256').update(`${scope}\0agent-b`).digest('hex').slice(0, 40)}`;
    // Bound by node, as the agent bound it (libuv pads an abstract name with NULs to the whole
    // sun_path), and retried until it is free: while B runs, an earlier version held it itself.
    const bindLoop = `(function bind() { const s = require("net").createServer(); s.once("error", () => setTimeout(bind, 5)); s.listen("\\u0000${oldName}", () => console.log("squatting")); })(); console.log("trying"); setTimeout(() => 0, 60000)`;
    const squat = await submit('agent-a', `'${process.execPath}' -e '${bindLoop}'`);
    const squatOutput = async () => String((await result(squat))['test_output']);
    await eventually(async () => /trying/.test(await squatOutput()), "A's job trying to bind the old name", 30_000);
    await host.check(['kill', '-9', String(bAgent)]);
    await eventually(async () => /squatting/.test(await squatOutput()), "A's job holding the old name", 30_000);
    const restarted = await eventually(async () => {
      const pid = await agentPid('agent-b').catch(() => bAgent);
      return pid !== bAgent && (await alive(pid)) && (await host.programs()).get('agent-b')?.state === 'RUNNING' ? pid : undefined;
    }, 'B running again', 30_000);
    expect((await result(squat))['job_state']).toBe('test');

    const second = await host.exec(['setpriv', '--reuid=tf-agent-b', '--regid=tf-agent-b', '--init-groups', '--', 'env', '-i', ...bEnv, ...(await host.readFile(`/proc/${restarted}/cmdline`)).split('\0').filter(Boolean)]);
    expect(second.exitCode).toBe(3);
    expect(`${second.stdout}${second.stderr}`).toMatch(new RegExp(`agent_id "agent-b" is already run by another testflinger-agent \\(pid ${restarted}: `));
    await api('POST', `/v1/job/${squat}/action`, { action: 'cancel' });
    await testOutput(squat);
  }, 120_000);

  it('with test-sandbox=false, a job on A still cannot reach B (users), and its daemon still dies with its phase (cgroup)', async () => {
    host.setConfig({ 'test-sandbox': false });
    await host.hook('config-changed');
    expectStartingOrRunning(host.status, 2, '; test sandbox off');
    // supervisord restarted A and B on their new program files; B's job from before was interrupted.
    await eventually(async () => {
      const agents = (await api('GET', '/v1/agents/data')) as { name: string; state: string }[];
      return AGENTS.every((a) => agents.some((d) => d.name === a && d.state === 'waiting'));
    }, 'both agents waiting again', 30_000);
    const busyB = await submit('agent-b', 'echo b-secret >b-results.txt; sleep 60');
    await eventually(async () => (await result(busyB))['job_state'] === 'test', "B's new job in its test phase", 30_000);
    const bRun = `${stateOf('agent-b')}/run/${busyB}`;
    const bAgent = await agentPid('agent-b');
    const sleepArg = `3000.${parseInt(randomBytes(4).toString('hex'), 16)}`;
    const out = await testOutput(
      await submit(
        'agent-a',
        `echo "home=$HOME"; touch ${bRun}/planted; echo "write=$?"; kill -9 ${bAgent}; echo "kill=$?"; setsid sh -c 'trap "" TERM; exec sleep ${sleepArg}' </dev/null >/dev/null 2>&1 & sleep 0.5`,
      ),
    );
    expect(out).toMatch(/home=\/var\/lib\/testflinger-agent\/home\/agent-a/);
    expect(out).toMatch(/write=[1-9]/);
    expect(out).toMatch(/kill=[1-9]/);
    expect(await host.exists(`${bRun}/planted`)).toBe(false);
    expect(await alive(bAgent)).toBe(true);
    expect(out).toMatch(/cleanup: 1 process left by the test phase was killed: (sleep|sh|setsid)\(\d+\)/);
    await eventually(() => processesWith(sleepArg).length === 0, 'the daemon gone', 5000);
  }, 90_000);
});
