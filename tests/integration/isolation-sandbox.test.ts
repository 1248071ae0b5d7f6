/**
 * The test phase's sandbox (TESTFLINGER_TEST_SANDBOX=on), as a real agent process run by an
 * unprivileged user sees it: the host read-only, a private /tmp and /proc, its run directory
 * writable, ~/.ssh read-only, the agent's other directories hidden, the network shared. Off, the
 * phase runs on the bare host; on but unusable, the phase fails rather than run bare.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { AgentProcess } from '../helpers/agentprocess';
import { eventually, tempDir } from '../helpers/tmp';

let server: DevServer;
let agent: AgentProcess | undefined;
let home: string;
/** A file in the host's /tmp that no sandboxed job may see. */
let hostSecret: string;
/** A world-writable directory of the host outside /tmp (as /run/lock is on Ubuntu): read-only to a sandboxed job. */
let worldWritable: string;

beforeEach(async () => {
  server = new DevServer();
  await server.start();
  home = tempDir('sandbox-home');
  fs.mkdirSync(path.join(home, '.ssh'));
  fs.writeFileSync(path.join(home, '.ssh', 'id_rsa'), 'LAB KEY\n');
  fs.writeFileSync(path.join(home, 'dotfile'), 'x');
  for (const p of [home, path.join(home, '.ssh'), path.join(home, '.ssh', 'id_rsa'), path.join(home, 'dotfile')]) fs.chownSync(p, 65534, 65534);
  hostSecret = path.join(tempDir('host-secret'), 'secret');
  fs.writeFileSync(hostSecret, 'host secret');
  fs.chmodSync(path.dirname(hostSecret), 0o755);
  worldWritable = fs.mkdtempSync('/run/tf-isolation-');
  fs.chmodSync(worldWritable, 0o1777);
});
afterEach(async () => {
  fs.rmSync(worldWritable, { recursive: true, force: true });
  await agent?.stop();
  agent = undefined;
  await server.stop();
});

/** Each probe prints `name=<exit code>` (or a count), one a line. */
const PROBES = [
  'touch "$WORLD_WRITABLE/planted" 2>/dev/null; echo "hostwrite=$?"',
  'cat "$HOST_SECRET" >/dev/null 2>&1; echo "hosttmp=$?"',
  'touch ./mine; echo "rundir=$?"',
  'test -f testflinger.json; echo "jobfile=$?"',
  'grep -q "LAB KEY" ~/.ssh/id_rsa; echo "keyread=$?"',
  'touch ~/.ssh/planted 2>/dev/null; echo "sshwrite=$?"',
  'test -e ~/dotfile; echo "homefile=$?"',
  'echo "siblings=$(ls -A .. | wc -l)"',
  'ls -A "$LOGS" 2>/dev/null | grep -q . ; echo "logs=$?"',
  'echo "procs=$(ls /proc | grep -c "^[0-9]")"',
  `node -e 'fetch(process.env.SERVER + "/v1").then((r) => console.log("net=" + r.status), () => console.log("net=down"))'`,
].join('\n');

/** An agent whose test phase is `command`; the probes get their paths through its environment, which phases inherit. */
function startAgent(env: Record<string, string>, command = PROBES): AgentProcess {
  const dir = tempDir('sandbox-agent');
  const probeEnv = { HOST_SECRET: hostSecret, WORLD_WRITABLE: worldWritable, LOGS: path.join(dir, 'logs'), SERVER: server.url };
  agent = new AgentProcess({ HOME: home, ...probeEnv, ...env }, dir).start(server.url, { test_command: command });
  return agent;
}

/** Runs one job; returns its test output as name → value. */
async function probe(): Promise<Record<string, string>> {
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, `job ${id} done`, 30_000);
  const out = String(server.resultView(id)?.['test_output']);
  return Object.fromEntries([...out.matchAll(/^(\w+)=(\S*)$/gm)].map((m) => [m[1], m[2]]));
}

describe('the test sandbox', () => {
  it('on: host read-only, private /tmp and /proc, run dir writable, ~/.ssh read-only, agent dirs hidden, network shared', async () => {
    startAgent({ TESTFLINGER_TEST_SANDBOX: 'on' });
    const seen = await probe();
    expect(seen).toMatchObject({
      hostwrite: '1',
      hosttmp: '1',
      rundir: '0',
      jobfile: '0',
      keyread: '0',
      sshwrite: '1',
      homefile: '1',
      siblings: '1',
      logs: '1',
      net: '200',
    });
    expect(Number(seen['procs'])).toBeLessThan(8);
    expect(fs.existsSync(path.join(home, '.ssh', 'planted'))).toBe(false);
  });

  it('off (the switch unset): the same probes see the bare host', async () => {
    startAgent({});
    const seen = await probe();
    expect(seen).toMatchObject({ hostwrite: '0', hosttmp: '0', homefile: '0', logs: '0', sshwrite: '0', siblings: '2', net: '200' });
  });

  it('on but unusable (no bwrap): the test phase fails without running, saying why; the agent log says so at start', async () => {
    const marker = path.join(tempDir('ran'), 'ran');
    fs.chmodSync(path.dirname(marker), 0o777);
    const a = startAgent({ TESTFLINGER_TEST_SANDBOX: 'on', TESTFLINGER_SANDBOX_PROGRAM: '/nonexistent/bwrap' }, `touch ${marker}`);
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, `job ${id} done`, 30_000);
    expect(server.resultView(id)).toMatchObject({ test_status: 1, cleanup_status: 0 });
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/ERROR: the test phase was not run: its sandbox is unavailable \(\/nonexistent\/bwrap: .*\); the operator can turn the sandbox off/);
    expect(fs.existsSync(marker)).toBe(false);
    expect(a.log()).toMatch(/test phases will fail: the sandbox is on but unusable/);
  });
});
