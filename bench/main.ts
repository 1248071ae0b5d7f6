/**
 * npm run bench: hook latency at scale, agent footprint, job overhead, live-log latency and
 * sizes, each against a baseline taken in the same run. Writes bench/results.md.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import execa from 'execa';
import { stringify } from 'yaml';
import { createHost } from '../src/charm/host';
import { DevServer } from '../src/devserver';
import type { EmulatedUnit } from '../src/hooktools/emulator';
import { SandboxHost } from '../src/sandbox/host';
import { CHARM_ARCHES, NODE_RELEASES, SHIPPED_NODE_LINE, hostArch, type NodeLine } from '../src/pack/noderuntime';
import { packCharm, unpackCharm } from '../src/pack/pack';
import { CHARM_DIR, QUICK, agentConf, asRuntime, node20, shipped, startAgent, tmp, type AgentRuntime } from './agents';
import { measureIsolation, measureJobs } from './isolation';
import { dirBytes, median, percentile, sleep, waitUntil } from './measure';
import { benchFootprint, benchNodeLines, lineRows, memoryMethod } from './memory';
import { ms, notes, row, rows, say } from './report';

const AGENT_COUNTS = process.argv.find((a) => a.startsWith('--agents='))?.slice('--agents='.length).split(',').map(Number);
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

async function benchHooks(): Promise<number> {
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

const SEVEN_PHASES = { setup_command: 'true', provision_command: 'true', firmware_update_command: 'true', test_command: 'true', allocate_command: 'true', reserve_command: 'true', cleanup_command: 'true' };
const SEVEN_PHASE_JOB = { provision_data: {}, firmware_update_data: {}, test_data: {}, allocate_data: {}, reserve_data: { timeout: 60 } };

/** Median pickup → complete of five 7-phase `true` jobs on one agent. */
async function sevenPhaseJobs(server: DevServer, agentName: string): Promise<{ pickupToComplete: number[]; submitToComplete: number[] }> {
  const pickupToComplete: number[] = [];
  const submitToComplete: number[] = [];
  for (let i = 0; i < 5; i++) {
    const submitted = Date.now();
    const id = server.submitJob({ job_queue: `${agentName}-q`, ...SEVEN_PHASE_JOB });
    await waitUntil('job complete', 60_000, () => server.resultView(id)?.['job_state'] === 'complete');
    const pickup = server.requests.find((r) => r.path === '/v1/job' && r.status === 200 && r.at >= submitted)?.at ?? submitted;
    const complete = Date.now();
    const statuses = Object.keys(server.resultView(id) ?? {}).filter((k) => k.endsWith('_status')).length;
    if (statuses !== 7) throw new Error(`bench job ran ${statuses} phases, not 7`);
    pickupToComplete.push(complete - pickup);
    submitToComplete.push(complete - submitted);
  }
  return { pickupToComplete, submitToComplete };
}

/** The same jobs on another runtime (each pinned line, V8's defaults), for the ratios. */
async function jobsOn(name: string, runtime: AgentRuntime, server: DevServer, url: string, dir: string): Promise<number> {
  const agent = startAgent(agentConf(dir, url, name, { ...SEVEN_PHASES, polling_interval: 1 }), runtime);
  try {
    await waitUntil(`${name} to report in`, 20_000, () => server.agents.get(name)?.['state'] === 'waiting');
    return median((await sevenPhaseJobs(server, name)).pickupToComplete);
  } finally {
    agent.kill('SIGTERM');
  }
}

async function benchJobs(): Promise<void> {
  say('\n# Job overhead and live-log latency (a real agent process, the dev server)');
  const server = new DevServer();
  const url = await server.start();
  const dir = tmp('jobs');
  const agent = startAgent(agentConf(dir, url, 'job-agent', { ...SEVEN_PHASES, polling_interval: 1 }));
  try {
    await waitUntil('the agent to report in', 20_000, () => server.agents.get('job-agent')?.['state'] === 'waiting');
    const direct: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = process.hrtime.bigint();
      for (let p = 0; p < 7; p++) execFileSync('/bin/sh', ['-c', 'true']);
      direct.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const { pickupToComplete, submitToComplete } = await sevenPhaseJobs(server, 'job-agent');
    const overhead = median(pickupToComplete) - median(direct);
    row(`7-phase \`true\` job, pickup → complete (median of 5; ${shipped().label})`, ms(median(pickupToComplete)), `the 7 commands run directly ${ms(median(direct))}`, median(pickupToComplete) / Math.max(1, median(direct)), '≤ 500 ms (upstream 25 s)');
    const on20 = await jobsOn('job-agent-20', node20(), server, url, dir);
    for (const line of Object.keys(NODE_RELEASES) as NodeLine[]) {
      const other = line === '20' ? on20 : await jobsOn(`job-agent-${line}`, asRuntime(line, []), server, url, dir);
      row(`7-phase job, pickup → complete, Node ${line} defaults`, ms(other), `${node20().label} ${ms(on20)}`, other / on20, '—');
    }
    row(`7-phase job, pickup → complete, ${shipped().label}`, ms(median(pickupToComplete)), `${node20().label} ${ms(on20)}`, median(pickupToComplete) / on20, '—');
    row('per-phase overhead', ms(overhead / 7), '—', '—', '—');
    row('7-phase job, submit → complete, polling every 1 s (median of 5)', ms(median(submitToComplete)), 'half a polling interval 500 ms', median(submitToComplete) / 500, '—');

    // Live log: lines stamped when printed; arrival is when the server received their fragment.
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    const logAgent = startAgent(agentConf(dir, url, 'log-agent', { test_command: 'for i in $(seq 1 40); do echo "LAT $(date +%s%3N)"; sleep 0.05; done', polling_interval: 1 }));
    try {
      await waitUntil('the log agent to report in', 20_000, () => server.agents.get('log-agent')?.['state'] === 'waiting');
      const id = server.submitJob({ job_queue: 'log-agent-q', test_data: {} });
      await waitUntil('log job complete', 60_000, () => server.resultView(id)?.['job_state'] === 'complete');
      const latencies = server.fragments(id).flatMap((f) => [...f.log_data.matchAll(/^LAT (\d+)$/gm)].map((m) => f.receivedAt - Number(m[1])));
      if (latencies.length !== 40) throw new Error(`saw ${latencies.length} of 40 lines`);
      row('live-log latency p50 (40 lines, 50 ms apart)', ms(percentile(latencies, 50)), 'upstream up to 10 s (fixed poll)', percentile(latencies, 50) / 10_000, '< 500 ms');
      row('live-log latency p95', ms(percentile(latencies, 95)), '—', '—', '—');
    } finally {
      logAgent.kill('SIGTERM');
    }
  } finally {
    agent.kill('SIGTERM');
    await server.stop();
  }
}

const PARTIAL_MARKER = '## Latest partial run';

/**
 * Per-phase cost of containment and the test sandbox: one phase against a bare spawn, and whole
 * 7-phase jobs against today's runner (process group only), each in the same run.
 */
async function benchIsolation(): Promise<void> {
  say('\n# Job isolation (per phase)');
  for (const r of await measureIsolation(QUICK ? 10 : 40)) row(`isolation, one phase: ${r.mode}`, `${r.medianMs.toFixed(1)} ms`, 'bare spawn, same run', r.ratio, '—');
  const [today, ...contained] = await measureJobs(QUICK ? 3 : 5);
  if (!today) return;
  row(`isolation: ${today.mode}`, `${today.medianMs.toFixed(1)} ms a phase`, '—', '—', '—');
  for (const r of contained) row(`isolation: ${r.mode}`, `${r.medianMs.toFixed(1)} ms a phase`, `today's runner ${today.medianMs.toFixed(1)} ms`, r.medianMs / today.medianMs, '≤ 2× today');
}

async function main(): Promise<void> {
  const started = Date.now();
  say(`testflinger-agent-host benchmark, ${new Date().toISOString()}, ${os.cpus().length} cores, node ${process.version}${QUICK ? ' (quick)' : ''}`);
  // --only=agents,memory (or the words alone: `npm run bench -- memory`): just those parts (hooks, agents, memory, jobs, isolation).
  const words = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? (words.length ? words.join(',') : undefined);
  const runs = (part: string) => !only || only.split(',').includes(part);
  const runtimeBytes = runs('hooks') ? await benchHooks() : 0;
  if (runs('agents')) await benchFootprint();
  if (runs('memory')) await benchNodeLines();
  if (runs('jobs')) await benchJobs();
  if (runs('isolation')) await benchIsolation();
  say('\n# Sizes');
  for (const arch of CHARM_ARCHES) {
    const charm = packCharm(CHARM_DIR, path.join(tmp('pack'), `${arch}.charm`), { arch });
    row(`.charm archive, ${arch}`, `${(charm.bytes / 1024 / 1024).toFixed(1)} MiB`, '—', '—', '—');
  }
  if (runtimeBytes) row('installed runtime (one version, sandbox: bundles only)', `${(runtimeBytes / 1024).toFixed(0)} KiB`, '—', '—', '—');
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const table = ['| figure | value | baseline (same run) | ratio | target |', '|---|---|---|---|---|', ...rows.map((r) => `| ${r.figure} | ${r.value} | ${r.baseline} | ${r.ratio} | ${r.target} |`)].join('\n');
  const method = `## Method
- Hooks: the real \`dispatch\` run as Juju runs it (environment built from scratch, emulated hook tools on PATH), \`AGENT_HOST_ROOT\` in a temp dir, a real git config repo, the real supervisord the charm starts. Agent programs are replaced by \`sleep\` after install, so the figure is the charm's own cost. "Fresh unit" is the first config-changed after install (clone, render, add every program to the supervisord that install started); "nothing changed" is five more config-changed runs; restarts are counted from supervisord's pids before and after. Baseline: \`node -e 0\` started the same way, median of 10.
${memoryMethod()}
- Where an unchanged config-changed spends its time: each part timed apart, in the same run, median of 5: \`node --version\` (dispatch's check) and \`node -e 0\` (the charm's own start), compiling dist/charm.js in a \`vm.Script\` (minus a bare start), the hook-tool calls the hook made times one call's cost, \`git ls-remote\` of the config repo as the charm runs it, and one read of supervisord's programs over its socket. The rest is the charm's own work (parsing the config, hashing, the state file). The unchanged hook parses no agent conf and renders no program file: it compares the hash of its inputs with the one it applied.
- Jobs: a real agent process with \`true\` as every phase command, five 7-phase jobs; pickup is the server's 200 to \`GET /v1/job\`, complete is when the server holds \`job_state: complete\`. Baseline: the seven commands run directly with /bin/sh. Live log: 40 lines stamped with the time they were printed, latency to the server's receipt of their fragment.
- Upstream figures are those recorded in the project's issue on a machine of this kind; the upstream agent cannot be installed here (no PyPI), so it was not rerun.
${notes.map((n) => `- ${n}`).join('\n')}
`;
  const lines = lineRows.length ? `\n\n## Idle agent memory by Node.js line and setting\n\n${lineRows.join('\n')}` : '';
  const doc = `# Benchmark results\n\n\`npm run bench${only ? ` -- --only=${only}` : ''}\`, ${new Date().toISOString()}, ${os.cpus().length} cores, Node ${process.version}, took ${seconds} s.\n\n${table}${lines}\n\n${method}`;
  fs.mkdirSync(path.join(CHARM_DIR, 'bench'), { recursive: true });
  const file = path.join(CHARM_DIR, 'bench', 'results.md');
  // A partial run (--only) keeps the last full table and puts its own figures after it.
  const partial = only ? `${PARTIAL_MARKER} (--only=${only}${AGENT_COUNTS ? ` --agents=${AGENT_COUNTS.join(',')}` : ''}), ${new Date().toISOString()}, took ${seconds} s\n\n${table}${lines}\n\n${method}` : undefined;
  const previous = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split(PARTIAL_MARKER)[0]?.trimEnd() ?? '' : '';
  fs.writeFileSync(file, partial ? `${previous}\n\n${partial}` : doc);
  say(`\n${table}${lines}\n\nwritten to bench/results.md (${seconds} s)`);
}

main().catch((error: Error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error.message}\n`);
  process.exitCode = 1;
});
