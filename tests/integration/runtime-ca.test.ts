/**
 * The agent, run by the runtime's wrapper with the charm's flags, trusts the host's CA store
 * (--use-openssl-ca): a server whose certificate the host's hashed certificate directory holds is
 * accepted, one it does not hold is refused, and NODE_EXTRA_CA_CERTS still adds to the store.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tlsFront, type TlsFront } from '../../bench/tls';
import { hostPaths } from '../../src/charm/paths';
import { installRuntime } from '../../src/charm/runtime';
import { DevServer } from '../../src/devserver';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

interface Site {
  server: DevServer;
  front: TlsFront;
}
const sites: Site[] = [];
let agent: WrappedAgent | undefined;
let wrapper: string;
/** The host's CA store as update-ca-certificates leaves it: PEM files and their subject-hash links. */
let hostCaDir: string;

async function site(): Promise<Site> {
  const server = new DevServer();
  const front = await tlsFront(await server.start(), tempDir('tls'));
  sites.push({ server, front });
  return { server, front };
}

beforeAll(async () => {
  const paths = hostPaths(tempDir('root'));
  installRuntime(paths, path.join(repoRoot, 'dist'), 'test', process.execPath, { copyNode: false });
  wrapper = paths.agentProgram;
  hostCaDir = tempDir('host-ca');
});
afterEach(async () => agent?.stop());

/** The agent as supervisord starts it on a unit: the runtime's wrapper, as root, in a small environment. */
class WrappedAgent {
  readonly dir = tempDir('ca-agent');
  private readonly child: ChildProcess;
  constructor(serverUrl: string, env: Record<string, string>) {
    const conf = path.join(this.dir, 'agent.conf');
    const under = (name: string) => path.join(this.dir, name);
    fs.writeFileSync(conf, JSON.stringify({ agent_id: 'agent-u', server_address: serverUrl, job_queues: ['q1'], polling_interval: 0.1, execution_basedir: under('run'), logging_basedir: under('logs'), results_basedir: under('results') }));
    this.child = spawn(wrapper, ['-c', conf, '--token-file', under('no-token')], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: this.dir, TESTFLINGER_AGENT_LOCK_SCOPE: this.dir, ...env }, stdio: 'ignore' });
  }
  log(): string {
    const file = path.join(this.dir, 'logs', 'testflinger-agent-agent-u.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await new Promise((r) => this.child.once('exit', r));
  }
}
afterAll(async () => {
  for (const { front, server } of sites) {
    await front.stop();
    await server.stop();
  }
});

/** The wrapper's agent against a site, in a unit's environment with the host's CA store at hostCaDir. */
function agentOf(target: Site, env: Record<string, string> = {}): WrappedAgent {
  return new WrappedAgent(target.front.url, { SSL_CERT_DIR: hostCaDir, ...env });
}
const reportedIn = (target: Site) => target.server.agents.get('agent-u')?.['state'] === 'waiting';

it('accepts a server whose CA the host trusts, and refuses one it does not', async () => {
  const [trusted, untrusted] = [await site(), await site()];
  fs.copyFileSync(trusted.front.caFile, path.join(hostCaDir, 'lab-ca.pem'));
  execFileSync('openssl', ['rehash', hostCaDir]);

  agent = agentOf(trusted);
  await eventually(() => reportedIn(trusted), 'the agent to report in to the trusted server', 30_000);
  await agent.stop();

  agent = agentOf(untrusted);
  await eventually(() => (agent?.log().match(/is not answering/g) ?? []).length >= 2, 'the agent to find the server not answering twice', 30_000);
  expect(untrusted.server.requests).toEqual([]);
  expect(reportedIn(untrusted)).toBe(false);
  // Its wait for the server names why, at once.
  expect(agent.log()).toMatch(/is not answering \(GET \/v1: unreachable \("self[- ]signed certificate"\)\)/);
  await agent.stop();
});

it('still adds NODE_EXTRA_CA_CERTS to the host store', async () => {
  const extra = await site();
  agent = agentOf(extra, { NODE_EXTRA_CA_CERTS: extra.front.caFile });
  await eventually(() => reportedIn(extra), 'the agent to report in through NODE_EXTRA_CA_CERTS', 30_000);
});
