/**
 * What one agent's jobs may take from the others, with real agent processes run by unprivileged
 * users of their own: no user namespace with every capability from the test sandbox, and a
 * bounded number of processes (the charm's agent-max-processes, TESTFLINGER_MAX_PROCESSES in the
 * agent's environment). On a unit the root wrapper sets the rlimits on the agent; here, as in a
 * sandbox root, the agent sets them on each phase (prlimit); the wrapper itself is run as root below.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sandboxArgv, sandboxFromEnv } from '../../src/agent/containment-sandbox';
import { DevServer } from '../../src/devserver';
import { AgentProcess } from '../helpers/agentprocess';
import { ownCgroupDir, removeChildCgroup } from '../helpers/cgroup';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

/** Users of their own (no passwd entry needed), so that no other test's processes count against the limit. */
const UID_A = 61001;
const UID_B = 61002;
const MAX_PROCESSES = 64;

let server: DevServer;
const agents: AgentProcess[] = [];

beforeEach(async () => {
  server = new DevServer();
  await server.start();
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  await server.stop();
});

function startAgent(uid: number, queue: string, testCommand: string, env: Record<string, string> = {}): AgentProcess {
  const home = tempDir('limits-home');
  fs.chownSync(home, uid, uid);
  const agent = new AgentProcess({ HOME: home, ...env }, tempDir('limits-agent'), false, uid).start(server.url, { job_queues: [queue], test_command: testCommand });
  agents.push(agent);
  return agent;
}

async function finished(id: string): Promise<Record<string, unknown>> {
  await eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, `job ${id} done`, 60_000);
  return server.resultView(id) as Record<string, unknown>;
}

/** Processes (not threads) this machine has for `uid`. */
function processesOf(uid: number): number {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e) && statUid(`/proc/${e}`) === uid).length;
}

function statUid(p: string): number | undefined {
  try {
    return fs.statSync(p).uid;
  } catch {
    return undefined;
  }
}

const bwrapMissing = spawnSync('bwrap', ['--version']).error !== undefined;
const itWithBwrap = bwrapMissing ? it.skip : it;

describe('the test sandbox gives a job no user namespace of its own', () => {
  itWithBwrap('unshare -Ur fails in the sandboxed test phase; the same user may make one outside it', async () => {
    const probe = 'unshare -Ur true; echo "userns=$?"';
    startAgent(UID_A, 'qa', probe, { TESTFLINGER_TEST_SANDBOX: 'on' });
    const inside = await finished(server.submitJob({ job_queue: 'qa', test_data: {} }));
    expect(String(inside['test_output'])).toMatch(/^userns=[1-9]/m);
    // Without the sandbox the same command works on this machine: the refusal above is the sandbox's.
    startAgent(UID_B, 'qb', probe);
    const outside = await finished(server.submitJob({ job_queue: 'qb', test_data: {} }));
    expect(String(outside['test_output'])).toMatch(/^userns=0$/m);
  });
});

describe('a bwrap older than 0.8 (no --disable-userns)', () => {
  itWithBwrap('still makes the sandbox, without that flag, and the agent is warned', () => {
    // Stands for bubblewrap 0.6 (Ubuntu 22.04): refuses the flag as it does, runs the real bwrap otherwise.
    const old = path.join(tempDir('old-bwrap'), 'bwrap');
    fs.writeFileSync(old, '#!/bin/sh\ncase " $* " in *" --disable-userns "*) echo "bwrap: Unknown option --disable-userns" >&2; exit 1 ;; esac\nexec bwrap "$@"\n', { mode: 0o755 });
    const warnings: string[] = [];
    const settings = sandboxFromEnv({ TESTFLINGER_TEST_SANDBOX: 'on', TESTFLINGER_SANDBOX_PROGRAM: old }, [], (m) => warnings.push(m));
    expect(settings).toMatchObject({ program: old, disableUserns: false });
    expect(settings?.unusable).toBeUndefined();
    expect(warnings).toEqual([`${old} has no --disable-userns (bubblewrap 0.8 or later has it): a job in the test sandbox can make user namespaces of its own`]);
    expect(sandboxArgv(settings as NonNullable<typeof settings>, { runDir: '/tmp' })).not.toContain('--disable-userns');
  });
});

describe("one agent's fork flood stops at its process limit", () => {
  it("the flood is held to the limit and told so in its output, while another agent takes and runs a job", async () => {
    // A bounded flood (500 > the limit); dash stops at the first refused fork. Then the phase holds
    // its processes (exec: no fork needed) while B works.
    const flood = `sh -c 'i=0; while [ $i -lt 500 ]; do sleep 120 & i=$((i+1)); done; echo "spawned=$i"'; exec sleep 20`;
    startAgent(UID_A, 'qa', flood, { TESTFLINGER_MAX_PROCESSES: String(MAX_PROCESSES) });
    startAgent(UID_B, 'qb', 'echo b-ran');
    const flooding = server.submitJob({ job_queue: 'qa', test_data: {} });
    await eventually(() => processesOf(UID_A) >= MAX_PROCESSES / 2, "A's flood under way", 30_000);
    // A stays at its limit: give the flood time to reach it, then B must still get through.
    await new Promise((r) => setTimeout(r, 2000));
    const held = processesOf(UID_A);
    const b = await finished(server.submitJob({ job_queue: 'qb', test_data: {} }));
    expect(b).toMatchObject({ test_status: 0 });
    expect(String(b['test_output'])).toMatch(/^b-ran$/m);
    expect(server.resultView(flooding)?.['job_state']).toBe('test');
    expect(held).toBeLessThanOrEqual(MAX_PROCESSES);
    const a = await finished(flooding);
    const out = String(a['test_output']);
    expect(out).not.toMatch(/spawned=500/);
    expect(out).toMatch(new RegExp(`NOTE: this phase hit its process limit \\(${MAX_PROCESSES} processes for this agent, the charm's agent-max-processes\\): a fork was refused`));
    await eventually(() => processesOf(UID_A) <= 2, "A's flood gone with its phase", 10_000);
  }, 120_000);
});

describe('the root wrapper (testflinger-agent-contained) bounds the agent before it drops to its user', () => {
  const wrapper = path.join(repoRoot, 'tf-cmd-scripts', 'testflinger-agent-contained');
  const itAsRoot = process.getuid?.() === 0 ? it : it.skip;

  itAsRoot('hard RLIMIT_NPROC and RLIMIT_DATA that the agent cannot raise', () => {
    const name = `limits-test-${process.pid}`;
    const agent = "grep -E '^Max (processes|data size)' /proc/self/limits; prlimit --nproc=4096:4096 --pid $$ 2>/dev/null; echo \"raise=$?\"";
    const run = spawnSync('sh', [wrapper, 'daemon', name, 'sh', '-c', agent], {
      encoding: 'utf8',
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TESTFLINGER_MAX_PROCESSES: '100', TESTFLINGER_MAX_MEMORY: '536870912' },
    });
    removeChildCgroup(name);
    expect(run.stdout).toMatch(/^Max data size\s+536870912\s+536870912\s+bytes/m);
    expect(run.stdout).toMatch(/^Max processes\s+100\s+100\s+processes/m);
    expect(run.stdout).toMatch(/^raise=[1-9]/m);
  });

  itAsRoot("started from supervisord's leaf (DelegateSubgroup=supervisord), puts the agent's cgroup beside it, not in it", () => {
    const own = ownCgroupDir();
    if (!own) return;
    const service = path.join(own, `limits-svc-${process.pid}`);
    const leaf = path.join(service, 'supervisord');
    fs.mkdirSync(leaf, { recursive: true });
    try {
      const run = spawnSync('sh', ['-c', 'echo $$ >"$1/cgroup.procs" && shift && exec sh "$@"', 'enter', leaf, wrapper, 'daemon', 'agent-x', 'cat', '/proc/self/cgroup'], {
        encoding: 'utf8',
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
      });
      expect(run.stdout).toMatch(new RegExp(`^0::/(.*/)?limits-svc-${process.pid}/agent-x$`, 'm'));
    } finally {
      // Deepest first; the agent's cgroup is in one of the two places (in the leaf when broken).
      for (const dir of [path.join(service, 'agent-x'), path.join(leaf, 'agent-x'), leaf, service]) if (fs.existsSync(dir)) fs.rmdirSync(dir);
    }
  });

  itAsRoot('refuses a limit that is not a plain number', () => {
    const run = spawnSync('sh', [wrapper, 'daemon', `limits-test-${process.pid}`, 'true'], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TESTFLINGER_MAX_PROCESSES: '1;id' } });
    removeChildCgroup(`limits-test-${process.pid}`);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/not a limit: 1;id/);
  });
});
