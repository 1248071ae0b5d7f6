/**
 * What an idle agent costs in memory: one agent as the charm runs it against Node 20 (what the
 * charm ran before) and an idle `node -e` in the same run, over http and over https; every
 * pinned Node.js line with V8's defaults and with the charm's settings, each setting alone; and
 * where the private pages are, mapping kind by mapping kind. `npm run bench -- --only=agents,memory`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { MQTT_BROKER_ENV, MQTT_TOPIC_PREFIX_ENV } from '../src/common/contract';
import { DevServer } from '../src/devserver';
import { NODE_RELEASES, SHIPPED_NODE_LINE, type NodeLine } from '../src/pack/noderuntime';
import { QUICK, agentConf, asRuntime, charmSettings, node20, pinnedNode, shipped, startAgent, tmp, withCharmSettings, type AgentRuntime } from './agents';
import { cpuSeconds, median, processMemory, sleep, waitUntil, type Memory } from './measure';
import { mb, row, say } from './report';
import { tlsFront } from './tls';

/** The agent runs its first memory reduction 30 s after it starts (src/agent/memory.ts); samples are taken after it. */
const SETTLE_MS = QUICK ? 35_000 : 40_000;
const IDLE_NODE_SCRIPT = 'setInterval(() => {}, 1 << 30)';

function idleNode(runtime: AgentRuntime): ChildProcess {
  return spawn(runtime.node, [...runtime.flags, '-e', IDLE_NODE_SCRIPT], { stdio: 'ignore', env: { ...process.env, ...runtime.env } });
}

// ---------- where the pages are ----------

/** Mapping kinds, in the order the table shows them. */
const KINDS = [
  'V8 heap (anonymous, 256 KiB-aligned)',
  'V8 code (anonymous, executable)',
  'V8 read-only space (anonymous, read-only)',
  '[heap] (malloc)',
  'other anonymous (large mallocs, abseil, thread-local)',
  'thread stacks',
  '[stack] (main thread)',
  'node binary (.data, .bss, relocations)',
  'shared libraries',
] as const;
type Kind = (typeof KINDS)[number];

interface Mapping {
  start: bigint;
  sizeKb: number;
  perms: string;
  name: string;
  privateDirtyKb: number;
}

function mappings(pid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const [start, end] = [BigInt(`0x${head[1]}`), BigInt(`0x${head[2]}`)];
      out.push({ start, sizeKb: Number((end - start) / 1024n), perms: head[3] as string, name: (head[4] ?? '').trim(), privateDirtyKb: 0 });
      continue;
    }
    const dirty = /^Private_Dirty:\s+(\d+) kB/.exec(line);
    const last = out[out.length - 1];
    if (dirty && last) last.privateDirtyKb = Number(dirty[1]);
  }
  return out;
}

/**
 * A mapping's kind, told from /proc alone: V8 allocates its heap in 256 KiB-aligned pages, glibc
 * gives each thread an 8 MiB stack after a guard page, the node binary's writable segment is
 * its file mapping with w.
 */
function kindOf(m: Mapping, previous: Mapping | undefined, nodePath: string): Kind | undefined {
  if (m.name === '[heap]') return '[heap] (malloc)';
  if (m.name === '[stack]') return '[stack] (main thread)';
  if (m.name === nodePath) return 'node binary (.data, .bss, relocations)';
  if (m.name.startsWith('/')) return 'shared libraries';
  if (m.name !== '') return undefined;
  if (m.perms.includes('x')) return 'V8 code (anonymous, executable)';
  if (m.perms.startsWith('r--')) return 'V8 read-only space (anonymous, read-only)';
  if (m.start % (256n * 1024n) === 0n && m.start < 0x7f0000000000n) return 'V8 heap (anonymous, 256 KiB-aligned)';
  if (m.sizeKb === 8192 && previous?.perms.startsWith('---')) return 'thread stacks';
  return 'other anonymous (large mallocs, abseil, thread-local)';
}

function privateDirtyByKind(pid: number, nodePath: string): Record<Kind, number> {
  const totals = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
  const maps = mappings(pid);
  maps.forEach((m, i) => {
    const kind = kindOf(m, maps[i - 1], nodePath);
    if (kind) totals[kind] += m.privateDirtyKb;
  });
  return totals;
}

// ---------- one agent, as the charm runs it ----------

/** One idle agent as the charm runs it, over http and https, against Node 20 and an idle node in the same run. */
export async function benchFootprint(): Promise<void> {
  say('\n# Agent footprint (idle, polling the dev server every 10 s, from after its first memory reduction)');
  const server = new DevServer();
  const url = await server.start();
  const dir = tmp('agents');
  const front = await tlsFront(url, dir);
  const ours = shipped();
  // Trusting the front's certificate, in a unit's environment: a dev machine's SSL_CERT_FILE
  // would make OpenSSL load a whole bundle up front (the agent runs with --use-openssl-ca).
  const overHttps = { NODE_EXTRA_CA_CERTS: front.caFile, SSL_CERT_FILE: undefined, SSL_CERT_DIR: undefined };
  const baseline = idleNode(ours);
  const agents = {
    ours: startAgent(agentConf(dir, url, 'idle-agent'), ours),
    on20: startAgent(agentConf(dir, url, 'idle-agent-20'), node20()),
    oursHttps: startAgent(agentConf(dir, front.url, 'idle-agent-https'), ours, overHttps),
    on20Https: startAgent(agentConf(dir, front.url, 'idle-agent-20-https'), node20(), overHttps),
  };
  const windowS = QUICK ? 20 : 60;
  const many: ChildProcess[] = [];
  try {
    await waitUntil('the agents to report in', 30_000, () => ['idle-agent', 'idle-agent-20', 'idle-agent-https', 'idle-agent-20-https'].every((a) => server.agents.get(a)?.['state'] === 'waiting'));
    // More idle agents meanwhile, for the host's total.
    many.push(...Array.from({ length: QUICK ? 10 : 50 }, (_, i) => startAgent(agentConf(dir, url, `pss-agent-${i}`))));
    // CPU is the steady state's: from after the first memory reduction, over the window.
    await sleep(SETTLE_MS);
    const cpu0 = cpuSeconds(agents.ours.pid as number);
    const on20Cpu0 = cpuSeconds(agents.on20.pid as number);
    const baseCpu0 = cpuSeconds(baseline.pid as number);
    const from = Date.now();
    await sleep(windowS * 1000);
    const cpu = cpuSeconds(agents.ours.pid as number) - cpu0;
    const on20Cpu = cpuSeconds(agents.on20.pid as number) - on20Cpu0;
    const baseCpu = cpuSeconds(baseline.pid as number) - baseCpu0;
    const [memory, on20, https, on20Https, base] = [agents.ours, agents.on20, agents.oursHttps, agents.on20Https, baseline].map((p) => processMemory(p.pid as number)) as [Memory, Memory, Memory, Memory, Memory];
    const window = server.requests.filter((r) => r.agent === 'idle-agent' && r.at >= from);
    const polls = window.filter((r) => r.path === '/v1/job').length;
    const pssTotal = many.reduce((sum, p) => sum + processMemory(p.pid as number).pssKb, 0);
    const target = '≤ 12 MiB, stretch ≤ 8 MiB (upstream 23.2 MiB)';
    row(`idle agent Private_Dirty (${ours.label})`, mb(memory.privateDirtyKb), `${node20().label} ${mb(on20.privateDirtyKb)}; idle node -e ${mb(base.privateDirtyKb)}`, memory.privateDirtyKb / on20.privateDirtyKb, target);
    row(`idle agent Private_Dirty over https (${ours.label})`, mb(https.privateDirtyKb), `${node20().label} over https ${mb(on20Https.privateDirtyKb)}`, https.privateDirtyKb / on20Https.privateDirtyKb, target);
    row(`idle agent Private_Dirty beyond an idle node -e (${ours.label}, same settings)`, mb(memory.privateDirtyKb - base.privateDirtyKb), `idle node -e ${mb(base.privateDirtyKb)}`, memory.privateDirtyKb / base.privateDirtyKb, '—');
    row(`idle agent RSS (${ours.label})`, mb(memory.rssKb), `${node20().label} ${mb(on20.rssKb)}; idle node -e ${mb(base.rssKb)}`, memory.rssKb / on20.rssKb, '— (upstream 35 MB)');
    row('idle agent PSS', mb(memory.pssKb), `idle node -e ${mb(base.pssKb)}`, memory.pssKb / base.pssKb, '—');
    row(`idle agent CPU over ${windowS} s (${ours.label})`, `${cpu.toFixed(2)} s`, `${node20().label} ${on20Cpu.toFixed(2)} s; idle node -e ${baseCpu.toFixed(2)} s`, on20Cpu > 0 ? cpu / on20Cpu : 'n/a (Node 20 0)', '— (upstream 0.05–0.07 s/min)');
    row('requests per idle poll', (window.length / Math.max(1, polls)).toFixed(1), 'upstream 7 (recorded)', window.length / Math.max(1, polls) / 7, '≤ 3');
    row(`total PSS of ${many.length} idle agents`, mb(pssTotal), `${many.length} × one agent's RSS ${mb(memory.rssKb * many.length)}`, pssTotal / (memory.rssKb * many.length), '—');
  } finally {
    for (const p of [...many, ...Object.values(agents), baseline]) p.kill('SIGTERM');
    await front.stop();
    await server.stop();
  }
}

// ---------- every line, every setting ----------

/** The charm's settings one by one on the shipped line (VAR=value: environment; the rest: node flags). */
const SETTINGS_ALONE: readonly (readonly string[])[] = [['--lite-mode'], ['MALLOC_ARENA_MAX=1', 'MALLOC_TRIM_THRESHOLD_=0', 'MALLOC_TOP_PAD_=0'], ['--expose-gc', '--bytecode-old-age=1', '--compact-on-every-full-gc']];

const lineRuntimes = (): AgentRuntime[] => {
  const lines = Object.keys(NODE_RELEASES) as NodeLine[];
  return [...lines.flatMap((line) => [asRuntime(line, []), withCharmSettings(line)]), ...SETTINGS_ALONE.map((set) => asRuntime(SHIPPED_NODE_LINE, set))];
};

interface Sampled {
  runtime: AgentRuntime;
  /** An agent, or an idle `node -e` (no name). */
  name?: string;
  process: ChildProcess;
  memory: Memory[];
  kinds?: Record<Kind, number>;
  cpu0: number;
  cpu: number;
  threads: number;
}

/** Agents per runtime: one agent's figure moves by up to 1 MB with when V8 last collected. */
const REPLICAS = QUICK ? 1 : 3;
export const lineRows: string[] = [];

/**
 * Idle agents on every line and setting, REPLICAS of each, all at once against one server (same
 * machine, same moment), started round-robin so that none is always first; memory sampled three
 * times once they settled; the median over samples and replicas is kept. Idle `node -e` on the
 * shipped line, with and without the charm's settings, is the runtime's own share.
 */
export async function benchNodeLines(): Promise<void> {
  say('\n# Idle agent memory by Node.js line and setting (all running side by side)');
  const server = new DevServer();
  const url = await server.start();
  const dir = tmp('lines');
  const runtimes = lineRuntimes();
  const idleRuntimes = [asRuntime(SHIPPED_NODE_LINE, []), withCharmSettings(SHIPPED_NODE_LINE), asRuntime('20', [])];
  const sampled: Sampled[] = [
    ...Array.from({ length: REPLICAS }, () => runtimes).flat().map((runtime, i): Sampled => {
      const name = `line-agent-${i}`;
      return { runtime, name, process: startAgent(agentConf(dir, url, name), runtime), memory: [], cpu0: 0, cpu: 0, threads: 0 };
    }),
    ...idleRuntimes.map((runtime): Sampled => ({ runtime, process: idleNode(runtime), memory: [], cpu0: 0, cpu: 0, threads: 0 })),
  ];
  const agents = sampled.filter((s) => s.name);
  try {
    await waitUntil('every agent to report in', 180_000, () => agents.every((a) => server.agents.get(a.name as string)?.['state'] === 'waiting'));
    await sleep(SETTLE_MS);
    for (const a of sampled) a.cpu0 = cpuSeconds(a.process.pid as number);
    for (let i = 0; i < 3; i++) {
      for (const a of sampled) a.memory.push(processMemory(a.process.pid as number));
      await sleep(QUICK ? 2_000 : 10_000);
    }
    for (const a of sampled) {
      a.cpu = cpuSeconds(a.process.pid as number) - a.cpu0;
      a.threads = fs.readdirSync(`/proc/${a.process.pid as number}/task`).length;
      a.kinds = privateDirtyByKind(a.process.pid as number, a.runtime.node);
    }
  } finally {
    for (const a of sampled) a.process.kill('SIGTERM');
    await server.stop();
  }
  const of = (runtime: AgentRuntime) => sampled.filter((a) => a.runtime === runtime);
  const med = (runtime: AgentRuntime, field: keyof Memory) => median(of(runtime).flatMap((a) => a.memory.map((m) => m[field])));
  const reference = runtimes[0] as AgentRuntime; // Node 20, defaults
  const ours = runtimes.find((r) => r.node === pinnedNode(SHIPPED_NODE_LINE) && r.label.endsWith("charm's settings")) as AgentRuntime;
  const windowS = QUICK ? 6 : 30;
  lineRows.push(`| Node.js line, settings (${REPLICAS} agents each; idle node -e: 1) | Private_Dirty | ratio to Node 20 defaults | RSS | PSS | CPU over ${windowS} s (median) | threads |`, '|---|---|---|---|---|---|---|');
  for (const runtime of [...runtimes, ...idleRuntimes]) {
    const idle = !of(runtime)[0]?.name;
    const label = idle ? `idle \`node -e\`: ${runtime.label}` : runtime.label;
    const ratio = med(runtime, 'privateDirtyKb') / med(reference, 'privateDirtyKb');
    const cpu = median(of(runtime).map((a) => a.cpu));
    const range = of(runtime).map((a) => mb(median(a.memory.map((m) => m.privateDirtyKb)))).join(', ');
    lineRows.push(`| ${label} | ${mb(med(runtime, 'privateDirtyKb'))} (${range}) | ${ratio.toFixed(2)}× | ${mb(med(runtime, 'rssKb'))} | ${mb(med(runtime, 'pssKb'))} | ${cpu.toFixed(2)} s | ${of(runtime)[0]?.threads} |`);
    say(`  ${label}: Private_Dirty ${mb(med(runtime, 'privateDirtyKb'))} [${range}] (${ratio.toFixed(2)}×), RSS ${mb(med(runtime, 'rssKb'))}, CPU ${cpu.toFixed(2)} s`);
  }
  const idleOurs = idleRuntimes[1] as AgentRuntime;
  row(`idle agent Private_Dirty, settled (${REPLICAS} agents; Node ${SHIPPED_NODE_LINE} ${NODE_RELEASES[SHIPPED_NODE_LINE].version}, charm's settings)`, mb(med(ours, 'privateDirtyKb')), `Node 20 defaults ${mb(med(reference, 'privateDirtyKb'))}; idle node -e, same line and settings ${mb(med(idleOurs, 'privateDirtyKb'))}`, med(ours, 'privateDirtyKb') / med(reference, 'privateDirtyKb'), '≤ 12 MiB, stretch ≤ 8 MiB (Node 24 defaults were 19.7 MiB)');
  mappingRows(of(reference), of(ours), reference.label, ours.label);
}

/** Private_Dirty by mapping kind, Node 20 defaults against the shipped agent (medians over the replicas). */
function mappingRows(before: Sampled[], after: Sampled[], beforeLabel: string, afterLabel: string): void {
  const medianKb = (agents: Sampled[], kind: Kind) => median(agents.map((a) => a.kinds?.[kind] ?? 0));
  const total = (agents: Sampled[]) => median(agents.map((a) => KINDS.reduce((sum, k) => sum + (a.kinds?.[k] ?? 0), 0)));
  lineRows.push('', `Where an idle agent's private pages are (Private_Dirty by mapping kind, /proc/<pid>/smaps at the last sample, median of ${REPLICAS}):`, '', `| mapping kind | ${beforeLabel} | ${afterLabel} | difference |`, '|---|---|---|---|');
  for (const kind of KINDS) {
    const [a, b] = [medianKb(before, kind), medianKb(after, kind)];
    lineRows.push(`| ${kind} | ${a} kB | ${b} kB | ${b - a >= 0 ? '+' : ''}${b - a} kB |`);
  }
  lineRows.push(`| all | ${total(before)} kB | ${total(after)} kB | ${total(after) - total(before) >= 0 ? '+' : ''}${total(after) - total(before)} kB |`);
  say(`  charm's settings: ${charmSettings()}`);
}

/** The method of the memory figures, for bench/results.md. */
export function memoryMethod(): string {
  const versions = (Object.keys(NODE_RELEASES) as NodeLine[]).map((l) => NODE_RELEASES[l].version).join(', ');
  return [
    `- Node.js: agents run on the pinned node-linux-${process.arch === 'arm64' ? 'arm64' : 'x64'} binaries (${versions}); "${shipped().label}" is what the charm installs: Node ${NODE_RELEASES[SHIPPED_NODE_LINE].version} with \`${charmSettings()}\` (VAR=value items in the environment, the rest node flags, as the charm's wrapper runs it). "Node 20, defaults" is the same agent on Node ${NODE_RELEASES['20'].version} without flags (what the charm shipped before), running at the same time.`,
    `- Footprint: real agent processes polling the dev server every 10 s (over https: through a TLS front on 127.0.0.1 with a throwaway certificate the agent trusts via NODE_EXTRA_CA_CERTS); the window starts ${SETTLE_MS / 1000} s after they reported in (past the agent's first memory reduction at 30 s, which costs about 0.07 s of CPU and recurs every 10 minutes); memory from /proc/<pid>/smaps_rollup at the end of the window; CPU from /proc/<pid>/stat over the window; requests counted at the server. Baseline: an idle \`node -e setInterval\` on the same line with the same settings. The total PSS is of ${QUICK ? 10 : 50} more idle agents started meanwhile (shared pages of the Node binary counted once).`,
    `- Lines and settings: ${REPLICAS} idle agents per line and setting, all started together (round-robin) against one dev server, polling every 10 s; after all reported in and ${SETTLE_MS / 1000} s more, /proc/<pid>/smaps_rollup is read three times ${QUICK ? 2 : 10} s apart; the figure is the median over samples and agents, each agent's own median in brackets. One agent's figure moves by up to 1 MB with when V8 last collected garbage, so differences under ~0.5 MB are noise.`,
    '- Mapping kinds are told from /proc/<pid>/smaps alone: anonymous 256 KiB-aligned mappings below 0x7f0000000000 are V8 heap pages, anonymous executable ones V8 code, anonymous read-only ones V8 read-only space, 8 MiB anonymous mappings after a guard page thread stacks, the other anonymous ones large mallocs (glibc mmaps chunks of 128 KiB and more), thread-local data and, on Node 24 and 26, the 1 MiB graph of abseil\'s mutex deadlock detection, which those builds keep on.',
  ].join('\n');
}

// ---------- MQTT off and on ----------

const MOSQUITTO = '/usr/sbin/mosquitto';

/**
 * What MQTT costs an idle agent: agents with MQTT off (the baseline: they never load its code),
 * on and connected to a real mosquitto, and on with the broker down (reconnecting with backoff),
 * all side by side in one run; the median Private_Dirty over replicas and three samples once
 * settled. Skipped without Debian's mosquitto.
 */
export async function benchMqttMemory(): Promise<void> {
  say('\n# Idle agent memory with MQTT off and on (side by side)');
  if (!fs.existsSync(MOSQUITTO)) {
    say('  skipped: no mosquitto (apt-get install mosquitto)');
    return;
  }
  const server = new DevServer();
  const url = await server.start();
  const dir = tmp('mqtt');
  const port = await freePort();
  const broker = spawn(MOSQUITTO, ['-p', String(port)], { stdio: 'ignore' });
  const down = `mqtt://127.0.0.1:${await freePort()}`;
  const kinds = { off: {}, connected: { [MQTT_BROKER_ENV]: `mqtt://127.0.0.1:${port}`, [MQTT_TOPIC_PREFIX_ENV]: 'bench' }, 'broker down': { [MQTT_BROKER_ENV]: down, [MQTT_TOPIC_PREFIX_ENV]: 'bench' } };
  const agents = Object.entries(kinds).flatMap(([kind, env]) => Array.from({ length: REPLICAS }, (_, i) => ({ kind, name: `mqtt-agent-${kind.replace(' ', '-')}-${i}`, env })));
  const running = agents.map((a) => ({ ...a, process: startAgent(agentConf(dir, url, a.name), shipped(), a.env), memory: [] as Memory[] }));
  try {
    await waitUntil('every agent to report in', 120_000, () => running.every((a) => server.agents.get(a.name)?.['state'] === 'waiting'));
    await sleep(SETTLE_MS);
    for (let i = 0; i < 3; i++) {
      for (const a of running) a.memory.push(processMemory(a.process.pid as number));
      await sleep(QUICK ? 2_000 : 10_000);
    }
  } finally {
    for (const a of running) a.process.kill('SIGTERM');
    broker.kill('SIGTERM');
    await server.stop();
  }
  const privateOf = (kind: string) => median(running.filter((a) => a.kind === kind).flatMap((a) => a.memory.map((m) => m.privateDirtyKb)));
  const off = privateOf('off');
  row(`idle agent Private_Dirty, MQTT off (${REPLICAS} agents)`, mb(off), '— (no MQTT code loaded: the baseline of the rows below)', '—', '≤ 12 MiB');
  for (const kind of ['connected', 'broker down']) {
    row(`idle agent Private_Dirty, MQTT on, ${kind} (${REPLICAS} agents)`, mb(privateOf(kind)), `MQTT off, same run ${mb(off)} (+${mb(privateOf(kind) - off)})`, privateOf(kind) / off, '— (report the cost)');
  }
}

function freePort(): Promise<number> {
  const probe = net.createServer();
  return new Promise((resolve) => probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address() as net.AddressInfo;
    probe.close(() => resolve(port));
  }));
}
