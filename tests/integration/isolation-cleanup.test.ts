/**
 * A phase's cleanup is total: whatever it started, double-forked daemons included, is gone when
 * it ends (exit, cancel, timeout, a killed agent), and the job's log names what was killed.
 * As the in-process agent (root here: its own cgroup) and as a real agent process run by an
 * unprivileged user (no writable cgroup: a PID namespace, and the test sandbox on top).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chooseContainment, defaultContainment, ownCgroup } from '../../src/agent/containment';
import { DevServer } from '../../src/devserver';
import { devServerPerTest, jobState } from '../helpers/agent';
import { AgentProcess } from '../helpers/agentprocess';
import { eventually } from '../helpers/tmp';

let server: DevServer;
const agent = devServerPerTest((s) => (server = s));

const ended = (id: string) => eventually(() => ['complete', 'cancelled'].includes(String(jobState(server, id))), `job ${id} to end`, 30_000);
const output = (id: string, phase: string) => String(server.resultView(id)?.[`${phase}_output`]);

/** A unique `sleep` to find on the machine by its command line: no pid file can cross a PID namespace. */
function marker(): string {
  return `3000.${parseInt(randomBytes(4).toString('hex'), 16)}`;
}

/** Pids (as this machine numbers them) of processes whose command line holds `text`. */
function processesWith(text: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(text)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/**
 * A daemon the way daemons are made: a new session, stdio closed, its parent gone (once it runs);
 * deaf to SIGTERM, so only the end of the phase's scope can take it.
 */
function daemonCommand(sleepArg: string): string {
  return `setsid sh -c 'trap "" TERM; exec sleep ${sleepArg}' </dev/null >/dev/null 2>&1 & sleep 0.5; echo started`;
}

/** A cancelled job is `cancelled` on the server at once; the agent is done once cleanup reported. */
const cleanedUp = (id: string) => eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, `job ${id} cleaned up`, 30_000);

/** The assertions every case makes: running while the phase ran, gone once it ended, named. */
async function expectDaemonEnded(id: string, sleepArg: string, phase = 'test'): Promise<void> {
  await cleanedUp(id);
  await eventually(() => processesWith(sleepArg).length === 0, 'the daemon gone', 5000);
  // Named as it is when the phase ends: `sleep` once it exec'd (a loaded machine may catch it before).
  expect(output(id, phase)).toMatch(new RegExp(`cleanup: 1 process left by the ${phase} phase was killed: (sleep|sh|setsid)\\(\\d+\\)`));
}

/** A test phase that leaves a daemon and sleeps is cancelled: both are gone once it ends. */
async function expectCancelLeavesNothing(startWith: (conf: Record<string, unknown>) => unknown): Promise<void> {
  const sleepArg = marker();
  startWith({ test_command: `${daemonCommand(sleepArg)}; sleep ${sleepArg}` });
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => processesWith(sleepArg).length === 2, 'the phase and its daemon running');
  server.cancelJob(id);
  await cleanedUp(id);
  expect(server.resultView(id)).toMatchObject({ job_state: 'cancelled', test_status: 137 });
  await eventually(() => processesWith(sleepArg).length === 0, 'every process of the phase gone', 5000);
}

const inCgroup = defaultContainment().kind === 'cgroup';
(inCgroup ? describe : describe.skip)('in the agent\'s cgroup (the in-process agent, root here)', () => {
  it('a daemon left by a phase that exited is killed and named in the job\'s log', async () => {
    const sleepArg = marker();
    agent({ test_command: daemonCommand(sleepArg) });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await expectDaemonEnded(id, sleepArg);
    expect(server.resultView(id)).toMatchObject({ test_status: 0, cleanup_status: 0 });
  });

  it('a cancelled test phase leaves nothing: its daemon and its sleep', async () => {
    await expectCancelLeavesNothing(agent);
  });

  it('a test phase that times out leaves nothing', async () => {
    const sleepArg = marker();
    agent({ test_command: `${daemonCommand(sleepArg)}; sleep ${sleepArg}` });
    const id = server.submitJob({ job_queue: 'q1', global_timeout: 1, test_data: {} });
    await ended(id);
    expect(output(id, 'test')).toMatch(/global timeout reached/);
    await eventually(() => processesWith(sleepArg).length === 0, 'every process of the phase gone', 5000);
  });

  it("a new agent process sweeps (after recovery) the phase cgroups of dead ones, killing what is in them", async () => {
    const own = ownCgroup() as { dir: string };
    // A pid above any pid_max: that agent process is surely gone.
    const orphan = path.join(own.dir, 'phase-4999999-1');
    fs.mkdirSync(orphan);
    const sleepArg = marker();
    const child = spawn('/bin/sh', ['-c', `echo $$ >${orphan}/cgroup.procs && exec sleep ${sleepArg}`], { stdio: 'ignore', detached: true });
    await eventually(() => processesWith(sleepArg).length === 1, 'the orphan running in its cgroup');
    const containment = chooseContainment();
    expect(containment.kind).toBe('cgroup');
    await containment.sweep();
    await eventually(() => !fs.existsSync(orphan) && processesWith(sleepArg).length === 0, 'the orphan cgroup emptied and removed', 5000);
    child.unref();
  });

  it('no phase cgroup is left behind', async () => {
    agent({ test_command: daemonCommand(marker()) });
    await ended(server.submitJob({ job_queue: 'q1', test_data: {} }));
    const own = (defaultContainment().description.match(/under "(.*)"/) ?? [])[1] as string;
    expect(fs.readdirSync(own).filter((n) => n.startsWith(`phase-${process.pid}-`))).toEqual([]);
  });
});

describe('a real agent process as an unprivileged user (sandbox mode): PID namespace', () => {
  let unprivileged: AgentProcess | undefined;
  afterEach(async () => {
    await unprivileged?.stop();
    unprivileged = undefined;
  });

  function start(conf: Record<string, unknown>, env: Record<string, string> = {}): AgentProcess {
    unprivileged = new AgentProcess(env).start(server.url, conf);
    return unprivileged;
  }

  it('says in its log what contains its phases, and why not a cgroup', async () => {
    const a = start({ test_command: 'true' });
    await eventually(() => /containment: /.test(a.log()), 'the containment line in the agent log');
    expect(a.log()).toMatch(/containment: each phase runs in its own PID namespace \(no cgroup: cannot create a cgroup in .*\(EACCES\)\)/);
  });

  it('a daemon left by a phase that exited is killed with its namespace and named in the job\'s log', async () => {
    const sleepArg = marker();
    start({ test_command: daemonCommand(sleepArg) });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await expectDaemonEnded(id, sleepArg);
  });

  it('a cancelled test phase leaves nothing', async () => {
    await expectCancelLeavesNothing(start);
  });

  it('in the test sandbox too: a daemon is killed and named', async () => {
    const sleepArg = marker();
    const a = start({ test_command: daemonCommand(sleepArg) }, { TESTFLINGER_TEST_SANDBOX: 'on' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await expectDaemonEnded(id, sleepArg);
    expect(a.log()).toMatch(/test phases run in a sandbox/);
  });

  it('in the test sandbox too: a test phase that times out leaves nothing', async () => {
    const sleepArg = marker();
    start({ test_command: `${daemonCommand(sleepArg)}; sleep ${sleepArg}` }, { TESTFLINGER_TEST_SANDBOX: 'on' });
    const id = server.submitJob({ job_queue: 'q1', global_timeout: 1, test_data: {} });
    await ended(id);
    expect(output(id, 'test')).toMatch(/global timeout reached/);
    await eventually(() => processesWith(sleepArg).length === 0, 'every process of the phase gone', 5000);
  });

  it.each([
    ['as nobody (PID namespace)', false],
    ['as root (its cgroup)', true],
  ])('kill -9 of the agent mid-phase, %s: the next agent process ends what the phase left', async (_mode, asRoot) => {
    const sleepArg = marker();
    const first = new AgentProcess({}, undefined, asRoot).start(server.url, { test_command: `${daemonCommand(sleepArg)}; sleep ${sleepArg}` });
    unprivileged = first;
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => processesWith(sleepArg).length === 2, 'the phase and its daemon running');
    // This test's agent, by its own pid: another test's agent left running would match a command line.
    await first.kill();
    // Same directories: the new process finds the job's bookkeeping.
    unprivileged = new AgentProcess({}, first.dir, asRoot).start(server.url, { test_command: 'true' });
    await cleanedUp(id);
    // The phase's shell, its sleep and the daemon, listed from the cgroup the killed agent recorded.
    if (asRoot) expect(output(id, 'test')).toMatch(/cleanup: 3 processes left by the test phase were killed: (sh|sleep)\(\d+\), (sh|sleep)\(\d+\), (sh|sleep)\(\d+\)\n/);
    await eventually(() => processesWith(sleepArg).length === 0, 'every process of the old phase gone', 5000);
  });
});
