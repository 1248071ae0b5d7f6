/** A charm under test: the real charm code, a temp host root, and an in-memory supervisord. */
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { AgentHostCharm } from '../../src/charm/charm';
import type { SupervisordDaemon } from '../../src/charm/driver';
import { createHost, type Host } from '../../src/charm/host';
import { hostPaths, type HostPaths } from '../../src/charm/paths';
import { managedProgramNames } from '../../src/charm/programfiles';
import type { LogTail, ProcessInfo, ProgramStatus, Refusals, SupervisorControl } from '../../src/charm/supervisor';
import { Context } from '../../src/ops/testing';
import { ConfigRepo, agentConf } from './gitrepo';
import { repoRoot, tempDir } from './tmp';

/** States in which real supervisord delivers a signal (supervisor/states.py SIGNALLABLE_STATES). */
const SIGNALLABLE = new Set(['RUNNING', 'STARTING', 'STOPPING']);

/**
 * An in-memory supervisord: programs and their states, every call recorded. Its limits go
 * through the host's real daemon driver (a file under the root), as the real one's do. It
 * answers the reconcile's calls only: to the operations' (process times, start, stop, log tail)
 * it is a supervisord that does not answer; OpsFakeSupervisor (charm-operations.ts) answers them.
 */
export class FakeSupervisor implements SupervisorControl {
  running = false;
  readonly calls: string[][] = [];
  readonly states = new Map<string, string>();
  daemon: SupervisordDaemon | undefined;
  constructor(private readonly paths: HostPaths) {}
  async isRunning() {
    return this.running;
  }
  async readPrograms() {
    return this.running ? this.status() : null;
  }
  async ensureRunning(agentCount: number) {
    if (this.running) return 'already-running' as const;
    this.writeLimits(agentCount);
    this.running = true;
    this.calls.push(['start']);
    this.load();
    return 'started' as const;
  }
  private load() {
    const names = managedProgramNames(this.paths);
    for (const name of [...this.states.keys()]) if (!names.includes(name)) this.states.delete(name);
    for (const name of names) if (!this.states.has(name)) this.states.set(name, 'RUNNING');
  }
  async update() {
    this.calls.push(['update']);
    this.load();
    return '';
  }
  /** When set, signal() fails as an unreachable supervisord would. */
  failSignals = false;
  async signal(names: readonly string[], signal = 'USR1') {
    if (this.failSignals && names.length > 0) throw new Error('supervisord is not answering');
    if (names.length > 0) this.calls.push(['signal', signal, ...names]);
    const signalled = names.filter((n) => SIGNALLABLE.has(this.states.get(n) ?? ''));
    return { signalled, notRunning: names.filter((n) => !signalled.includes(n)) };
  }
  async status(): Promise<ProgramStatus[]> {
    return [...this.states].map(([name, state]) => ({ name, state, description: '' }));
  }
  async shutdown() {
    this.running = false;
  }
  async processes(): Promise<ProcessInfo[] | null> {
    return null;
  }
  async start(_names: readonly string[]): Promise<Refusals> {
    throw new Error('FakeSupervisor: start is not answered here (opsHarness)');
  }
  async stop(_names: readonly string[]): Promise<Refusals> {
    throw new Error('FakeSupervisor: stop is not answered here (opsHarness)');
  }
  async tailLog(_name: string, _bytes: number): Promise<LogTail> {
    throw new Error('FakeSupervisor: tailLog is not answered here (opsHarness)');
  }
  writeLimits(agentCount: number) {
    if (!this.daemon) throw new Error('FakeSupervisor: no daemon to write limits with');
    return this.daemon.writeLimits(agentCount);
  }
  async restart() {
    this.calls.push(['restart']);
  }
  signalCalls(): string[][] {
    return this.calls.filter((c) => c[0] === 'signal').map((c) => c.slice(2));
  }
}

/** What the harness host reports; tests may shrink it. */
export const capacity = { maxOpenFiles: 1_048_576, memTotalMb: 65536 };

export interface CharmHarness {
  ctx: Context;
  host: Host;
  root: string;
  supervisor: FakeSupervisor;
}

/** @param options.unitName the unit the charm runs as (several units of one application: placement tests). */
export function charmHarness(options: { unitName?: string } = {}): CharmHarness {
  const root = tempDir('root');
  const paths = hostPaths(root);
  const supervisor = new FakeSupervisor(paths);
  // Ports are decided by the charm alone here; real listeners are the integration tests' business.
  const host = createHost({ paths, driver: 'sandbox', charmDir: repoRoot, supervisor, isPortFree: async () => true, capacity: () => capacity });
  supervisor.daemon = host.driver.supervisord;
  const ctx = new Context((fw) => new AgentHostCharm(fw, host), { charmDir: repoRoot, ...(options.unitName ? { unitName: options.unitName } : {}) });
  return { ctx, host, root, supervisor };
}

export function sshKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'der' },
  });
  // OpenSSH public key text for ed25519: "ssh-ed25519 " + base64(string "ssh-ed25519" + string key)
  const raw = publicKey.subarray(publicKey.length - 32);
  const name = Buffer.from('ssh-ed25519');
  const len = (n: number) => Buffer.from([0, 0, 0, n]);
  const blob = Buffer.concat([len(name.length), name, len(raw.length), raw]);
  return { privateKey, publicKey: `ssh-ed25519 ${blob.toString('base64')} lab@host\n` };
}

export const b64 = (text: string) => Buffer.from(text).toString('base64');

export function programDir(root: string): string {
  return path.join(root, 'etc', 'supervisor', 'conf.d');
}

/**
 * An agent conf whose run, log and results dirs are its own, under `base` (a fresh temp dir
 * unless given), never the shared /tmp/testflinger defaults another run may be using.
 */
export function labAgentConf(name: string, overrides: Record<string, unknown> = {}, base = tempDir('agentdirs')): string {
  return agentConf(name, { execution_basedir: `${base}/run`, logging_basedir: `${base}/logs`, results_basedir: `${base}/results`, ...overrides });
}

/** A config repo with these agents, each with its own dirs, committed. */
export function labRepo(...agents: string[]): ConfigRepo {
  const repo = new ConfigRepo('lab1');
  for (const name of agents) repo.addAgent(name, labAgentConf(name));
  repo.commit('initial');
  return repo;
}

/**
 * Makes the repo's agent look mid-job, as the agent does: its bookkeeping dir (`.<job>.agent`)
 * in its execution dir. Returns a function that ends the job.
 */
export function markBusy(repo: ConfigRepo, name: string): () => void {
  const conf = parseYaml(fs.readFileSync(path.join(repo.dir, repo.configDir, name, 'testflinger-agent.conf'), 'utf8')) as { execution_basedir: string };
  const job = path.join(conf.execution_basedir, '.test-job.agent');
  fs.mkdirSync(job, { recursive: true });
  return () => fs.rmSync(job, { recursive: true, force: true });
}
