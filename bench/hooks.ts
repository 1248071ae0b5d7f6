/**
 * npm run bench, hook latency: config-changed with 10, 100 and 500 agents on a sandbox root (real
 * dispatch, git and supervisord), fresh and unchanged, where an unchanged one spends its time, and
 * the 100-agent case on the packed .charm as a unit runs it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import execa from 'execa';
import { stringify } from 'yaml';
import { createHost } from '../src/charm/host';
import type { EmulatedUnit } from '../src/hooktools/emulator';
import { SandboxHost } from '../src/sandbox/host';
import { NODE_RELEASES, SHIPPED_NODE_LINE, hostArch } from '../src/pack/noderuntime';
import { packCharm, unpackCharm } from '../src/pack/pack';
import { CHARM_DIR, QUICK, tmp } from './agents';
import { dirBytes, median, sleep, waitUntil } from './measure';
import { ms, notes, row, say } from './report';

export const AGENT_COUNTS = process.argv.find((a) => a.startsWith('--agents='))?.slice('--agents='.length).split(',').map(Number);
const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'b@localhost', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'b@localhost' };

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', args, { cwd, env: GIT_ENV, stdio: 'ignore' });
}

// ---------- hooks ----------

async function floorMs(runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await execa(process.execPath, ['-e', '0'], { extendEnv: false, env: { PATH: process.env['PATH'] ?? '' }, stdin: 'ignore' });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

async function toolCallMs(unit: EmulatedUnit, runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    // As the charm calls it inside a hook: an environment built from scratch (no NODE_EXTRA_CA_CERTS).
    await execa(path.join(unit.binDir, 'config-get'), ['--format=json'], { extendEnv: false, env: { PATH: process.env['PATH'] ?? '', HOOKTOOL_STATE: unit.statePath } });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

async function medianMs(runs: number, once: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

interface HookSplit {
  total: number;
  nodeStarts: number;
  bundleCompile: number;
  toolCalls: number;
  git: number;
  supervisord: number;
}

/**
 * Where an unchanged config-changed spends its time, each part timed apart in the same run:
 * two Node starts (dispatch's `node --version`, then the charm), compiling the charm bundle, the
 * hook-tool calls, git's ls-remote, and one read of supervisord's programs. The rest is the
 * charm's own work (config, hashes, state).
 */
async function unchangedHookSplit(host: BenchHost, total: number, toolCalls: number, toolMs: number): Promise<HookSplit> {
  const env = { PATH: process.env['PATH'] ?? '' };
  const nodeVersion = await medianMs(5, () => execa(process.execPath, ['--version'], { extendEnv: false, env }));
  const nodeStart = await medianMs(5, () => execa(process.execPath, ['-e', '0'], { extendEnv: false, env }));
  const compile = `new (require('vm').Script)(require('fs').readFileSync(${JSON.stringify(path.join(CHARM_DIR, 'dist', 'charm.js'))}, 'utf8'))`;
  const withBundle = await medianMs(5, () => execa(process.execPath, ['-e', compile], { extendEnv: false, env }));
  const gitEnv = { ...env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
  const git = await medianMs(5, () => execa('git', ['ls-remote', '--end-of-options', host.repo, 'refs/heads/main', 'refs/tags/main'], { extendEnv: false, env: gitEnv }));
  const supervisor = createHost({ paths: host.paths, driver: 'sandbox', charmDir: CHARM_DIR }).supervisor;
  const supervisord = await medianMs(5, () => supervisor.readPrograms());
  return { total, nodeStarts: nodeVersion + nodeStart, bundleCompile: withBundle - nodeStart, toolCalls: toolCalls * toolMs, git, supervisord };
}

function splitRow(n: number, split: HookSplit, floor: number): void {
  const parts: [string, number][] = [
    ['2 Node starts', split.nodeStarts],
    ['charm bundle compile', split.bundleCompile],
    ['hook-tool calls', split.toolCalls],
    ['git ls-remote', split.git],
    ['supervisord status read', split.supervisord],
  ];
  const rest = split.total - parts.reduce((sum, [, v]) => sum + v, 0);
  const text = [...parts, ['the charm\'s own work (the rest)', rest] as [string, number]].map(([what, v]) => `${what} ${ms(v)}`).join(' + ');
  row(`config-changed, ${n} agents, nothing changed: where the time goes`, `${ms(split.total)} = ${text}`, `node -e 0 ${ms(floor)}`, split.total / floor, '—');
}

/** A sandbox unit with n agents in its config repo; agents are `sleep`, so the charm is what is timed. */
class BenchHost extends SandboxHost {
  constructor(root: string, readonly repo: string, charmDir: string) {
    super({ root, charmDir, hooktool: path.join(CHARM_DIR, 'dist', 'hooktool.js'), config: { 'config-dir': 'lab1' } });
  }
  /** Runs a hook; its wall time in ms. */
  async timed(dispatchPath: string): Promise<number> {
    const r = await this.dispatch(dispatchPath);
    if (r.exitCode !== 0) throw new Error(`${dispatchPath} failed: ${r.stderr}`);
    return r.durationMs;
  }
  async teardown(): Promise<void> {
    await this.shutdown();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

async function agentHost(n: number, charmDir: string): Promise<BenchHost> {
  const root = tmp(`host${n}`);
  const repo = path.join(root, 'repo');
  fs.mkdirSync(repo);
  git(repo, 'init', '-q', '-b', 'main');
  for (let i = 0; i < n; i++) {
    const dir = path.join(repo, 'lab1', `agent-${String(i).padStart(3, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'testflinger-agent.conf'), stringify({ agent_id: path.basename(dir), server_address: '127.0.0.1:9', job_queues: ['q'] }));
    fs.writeFileSync(path.join(dir, 'default.yaml'), 'device_ip: 127.0.0.1\n');
  }
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'agents');
  const host = new BenchHost(root, repo, charmDir);
  await host.timed('hooks/install');
  // The charm's cost, not the agents': each agent program becomes a `sleep`.
  fs.writeFileSync(host.paths.agentProgram, '#!/bin/sh\nexec sleep 86400\n', { mode: 0o755 });
  host.setConfig({ 'config-repo': repo });
  return host;
}

function programPids(host: BenchHost): Map<string, number | undefined> {
  return new Map([...host.programs()].map(([name, p]) => [name, p.pid]));
}

/** What config-changed costs with n agents: fresh (after install) and unchanged, on one charm dir. */
interface HookFigures {
  fresh: number[];
  unchanged: number[];
  restarted: number;
  toolMs: number;
  freshCalls: number;
  unchangedCalls: number;
  split?: HookSplit;
  runtimeBytes: number;
}

async function measureHooks(n: number, charmDir: string): Promise<HookFigures> {
  const figures: HookFigures = { fresh: [], unchanged: [], restarted: 0, toolMs: 0, freshCalls: 0, unchangedCalls: 0, runtimeBytes: 0 };
  const freshRuns = n >= 500 ? 1 : 3;
  for (let r = 0; r < freshRuns; r++) {
    const host = await agentHost(n, charmDir);
    try {
      const callsBefore = host.unit.state().calls.length;
      figures.fresh.push(await host.timed('hooks/config-changed'));
      figures.freshCalls = host.unit.state().calls.length - callsBefore;
      await waitUntil(`${n} programs RUNNING`, 120_000, () => [...host.programs().values()].filter((p) => p.state === 'RUNNING').length === n);
      if (r > 0) continue;
      const before = programPids(host);
      const callsBeforeUnchanged = host.unit.state().calls.length;
      for (let i = 0; i < 5; i++) figures.unchanged.push(await host.timed('hooks/config-changed'));
      figures.unchangedCalls = (host.unit.state().calls.length - callsBeforeUnchanged) / 5;
      await sleep(500);
      const after = programPids(host);
      figures.restarted = [...before].filter(([name, pid]) => after.get(name) !== pid).length;
      figures.toolMs = await toolCallMs(host.unit, 5);
      figures.split = await unchangedHookSplit(host, median(figures.unchanged), figures.unchangedCalls, figures.toolMs);
      figures.runtimeBytes = dirBytes(path.join(host.root, 'srv/testflinger-agent/versions'));
      notes.push(`${n} agents (${charmDir === CHARM_DIR ? 'dev checkout' : 'the .charm'}): an emulated hook-tool call costs ${ms(figures.toolMs)} (a Node start; upstream's emulation cost 17 ms); fresh config-changed made ${figures.freshCalls} calls, an unchanged one ${figures.unchangedCalls}; ${host.unit.state().calls.length} calls in all.`);
    } finally {
      await host.teardown();
    }
  }
  return figures;
}

/** This machine's .charm, unpacked as Juju unpacks it: its dispatch runs the shipped Node.js. */
function unpackedShippedCharm(): string {
  const dir = tmp('charm');
  const file = packCharm(CHARM_DIR, path.join(dir, 'bench.charm'), { arch: hostArch() }).file;
  unpackCharm(file, path.join(dir, 'unpacked'));
  return path.join(dir, 'unpacked');
}

export async function benchHooks(): Promise<number> {
  say('\n# Hook latency (config-changed in a sandbox root, real git, real supervisord)');
  const floor = await floorMs(10);
  say(`  floor: node -e 0 through the same spawn: ${ms(floor)} (median of 10)`);
  let runtimeBytes = 0;
  let devFresh100: number | undefined;
  for (const n of AGENT_COUNTS ?? (QUICK ? [10, 100] : [10, 100, 500])) {
    const f = await measureHooks(n, CHARM_DIR);
    runtimeBytes = f.runtimeBytes || runtimeBytes;
    if (n === 100) devFresh100 = median(f.fresh);
    const targetFresh = n === 100 ? '≤ 550 ms (upstream 860 ms)' : '—';
    const targetSame = n === 100 ? '≤ 330 ms, 0 restarts (upstream 780 ms)' : '0 restarts';
    const inTools = (calls: number) => `, ${calls} hook-tool calls ≈ ${ms(calls * f.toolMs)}`;
    row(`config-changed, ${n} agents, fresh unit (median of ${f.fresh.length}; dev checkout, Node ${process.versions.node.split('.')[0]})`, `${ms(median(f.fresh))}${inTools(f.freshCalls)}`, `node -e 0 ${ms(floor)}`, median(f.fresh) / floor, targetFresh);
    row(`config-changed, ${n} agents, nothing changed (median of 5; dev checkout)`, `${ms(median(f.unchanged))}, ${f.restarted} restarted${inTools(f.unchangedCalls)}`, `node -e 0 ${ms(floor)}`, median(f.unchanged) / floor, targetSame);
    if (f.split) splitRow(n, f.split, floor);
  }
  if (devFresh100 !== undefined) {
    // What a unit runs: the .charm's dispatch on the shipped Node.js, with its compile cache.
    const shippedDir = unpackedShippedCharm();
    const f = await measureHooks(100, shippedDir);
    const line = `Node ${NODE_RELEASES[SHIPPED_NODE_LINE].version}`;
    row(`config-changed, 100 agents, fresh unit (median of ${f.fresh.length}; the .charm as shipped, ${line})`, `${ms(median(f.fresh))}, ${f.freshCalls} hook-tool calls ≈ ${ms(f.freshCalls * f.toolMs)}`, `dev checkout on this Node ${ms(devFresh100)}`, median(f.fresh) / devFresh100, '≤ 550 ms (upstream 860 ms)');
    row(`config-changed, 100 agents, nothing changed (median of 5; the .charm as shipped, ${line})`, `${ms(median(f.unchanged))}, ${f.restarted} restarted`, `node -e 0 ${ms(floor)}`, median(f.unchanged) / floor, '≤ 330 ms, 0 restarts (upstream 780 ms)');
  }
  return runtimeBytes;
}
