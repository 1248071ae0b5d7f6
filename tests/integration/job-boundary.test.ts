/**
 * What a sandboxed job leaves in its run directory never steers the agent, which runs outside
 * the sandbox: a link at a file the agent writes (`<phase>.log`, testflinger-outcome.json) is
 * not written through, a FIFO at a file it opens (those, device-info.json, `<phase>-serial.log`,
 * artifacts/) does not make it wait, before or after a restart. And the job's secrets reach its
 * sandboxed command alone: not bubblewrap's environment, not any argv. A real agent process as
 * `nobody` with the sandbox on, against the dev server on 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { AgentProcess } from '../helpers/agentprocess';
import { RUN_TEST_CMDS } from '../helpers/phase-script';
import { eventually, tempDir } from '../helpers/tmp';

const NOBODY = 65534;
const SSH_CONFIG = 'Host *\n  StrictHostKeyChecking no\n';

let server: DevServer;
const agents: AgentProcess[] = [];
let home: string;
/** Where the agents look for offline markers (/tmp on a unit). */
let markers: string;

beforeEach(async () => {
  server = new DevServer();
  await server.start();
  home = tempDir('boundary-home');
  markers = tempDir('boundary-markers');
  fs.mkdirSync(path.join(home, '.ssh'));
  fs.writeFileSync(path.join(home, '.ssh', 'config'), SSH_CONFIG);
  for (const p of [home, path.join(home, '.ssh'), path.join(home, '.ssh', 'config'), markers]) fs.chownSync(p, NOBODY, NOBODY);
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  await server.stop();
});

function startAgent(dir?: string): AgentProcess {
  const env = { HOME: home, TESTFLINGER_TEST_SANDBOX: 'on', TESTFLINGER_OFFLINE_MARKER_DIR: markers };
  const agent = new AgentProcess(env, dir).start(server.url, { test_command: RUN_TEST_CMDS, cleanup_command: 'echo cleanup phase' });
  agents.push(agent);
  return agent;
}

function submit(testCmds: string, extra: Record<string, unknown> = {}): string {
  return server.submitJob({ job_queue: 'q1', test_data: { test_cmds: testCmds, ...extra } });
}

const ended = (id: string, timeoutMs = 30_000) =>
  eventually(() => (server.resultView(id)?.['cleanup_status'] !== undefined ? server.resultView(id) : undefined), `job ${id} ended`, timeoutMs);

/** A second job runs to the end: the agent is neither stuck nor held offline. */
async function stillTakesJobs(): Promise<void> {
  expect(await ended(submit('echo next-job'))).toMatchObject({ test_status: 0 });
}

describe('a job cannot steer the agent through its run directory', () => {
  it("links to ~/.ssh/config and to another agent's marker are not written through", async () => {
    startAgent();
    const otherMarker = path.join(markers, 'TESTFLINGER-DEVICE-OFFLINE-agent-2');
    const id = submit(
      [
        `ln -sf "$HOME/.ssh/config" test.log`,
        `echo 'Match exec "touch /tmp/pwned"'`,
        `ln -sf "$HOME/.ssh/config" cleanup.log`,
        `rm -f testflinger-outcome.json; ln -s ${otherMarker} testflinger-outcome.json`,
        `echo "keep=$(ls -A .. | grep -c agent)"`,
      ].join('\n'),
    );
    const view = await ended(id);
    expect(fs.readFileSync(path.join(home, '.ssh', 'config'), 'utf8')).toBe(SSH_CONFIG);
    expect(fs.existsSync(otherMarker)).toBe(false);
    expect(String(view['test_output'])).toMatch(/^keep=0$/m);
    expect(String(view['cleanup_output'])).toMatch(/WARNING: cleanup\.log not written: .*cleanup\.log: not a regular file \(ELOOP\)/);
    expect(String(view['cleanup_output'])).toMatch(/cleanup phase/);
    await stillTakesJobs();
  });

  it('FIFOs at every name the agent opens do not make it wait, and it does not wait after a restart either', async () => {
    const first = startAgent();
    const fifos = ['device-info.json', 'cleanup.log', 'cleanup-serial.log', 'artifacts/pipe'];
    const id = submit(`mkdir artifacts; echo report >artifacts/r.txt; mkfifo ${fifos.join(' ')}; rm testflinger-outcome.json; mkfifo testflinger-outcome.json`);
    const view = await ended(id);
    expect(view).toMatchObject({ test_status: 0, cleanup_status: 0 });
    expect(String(view['cleanup_output'])).toMatch(/WARNING: cleanup\.log not written: .*not a regular file/);
    await stillTakesJobs();

    // Killed mid-phase after the job put a FIFO at test.log: the next process reports the job.
    const killed = submit('rm test.log; mkfifo test.log; echo fifo-made >&2; sleep 600');
    await eventually(() => String(server.resultView(killed)?.['test_output'] ?? '').includes('fifo-made'), 'the FIFO made');
    for (const pid of agentPids(first.dir)) process.kill(pid, 'SIGKILL');
    agents.splice(agents.indexOf(first), 1);
    startAgent(first.dir);
    expect(await ended(killed)).toMatchObject({ test_status: 137 });
    await stillTakesJobs();
  }, 90_000);

  it('secrets reach the sandboxed command only: not bubblewrap, not argv', async () => {
    startAgent();
    const token = `tok-${randomBytes(8).toString('hex')}`;
    const id = submit('echo "token=$MY_TOKEN"; sleep 3', { secrets: { MY_TOKEN: token } });
    const seen = await eventually(() => {
      const procs = processes().filter((p) => p.environ.includes(token) || p.argv.includes(token));
      return procs.length > 0 ? procs : undefined;
    }, 'the test command running with its secret');
    // Only the command inside the sandbox (sh, then sleep) has it; never in an argv.
    for (const p of seen) {
      expect({ argv: p.argv.includes(token), bwrap: /bwrap/.test(p.argv) }).toEqual({ argv: false, bwrap: false });
    }
    const view = await ended(id);
    expect(String(view['test_output'])).toMatch(/^token=\*\*\*\*$/m);
  });
});

/** Processes of this machine: argv and environment text (we are root). */
function processes(): { pid: number; argv: string; environ: string }[] {
  const read = (pid: string, what: string) => {
    try {
      return fs.readFileSync(`/proc/${pid}/${what}`, 'utf8');
    } catch {
      return '';
    }
  };
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map((pid) => ({ pid: Number(pid), argv: read(pid, 'cmdline'), environ: read(pid, 'environ') }));
}

/** The agent processes started in `dir` (their conf is in it). */
function agentPids(dir: string): number[] {
  return processes().filter((p) => p.argv.includes(path.join(dir, 'agent.conf')) && p.argv.includes('testflinger-agent.js')).map((p) => p.pid);
}
