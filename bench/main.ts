/**
 * npm run bench: hook latency at scale, agent footprint, job overhead, live-log latency and
 * sizes, each against a baseline taken in the same run. Writes bench/results.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHARM_ARCHES } from '../src/pack/noderuntime';
import { packCharm } from '../src/pack/pack';
import { CHARM_DIR, QUICK, tmp } from './agents';
import { measureIsolation, measureJobs } from './isolation';
import { benchFootprint, benchMqttMemory, benchNodeLines, lineRows, memoryMethod } from './memory';
import { AGENT_COUNTS, benchHooks } from './hooks';
import { benchJobs } from './jobs';
import { notes, row, rows, say } from './report';

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
  // --only=agents,memory (or the words alone: `npm run bench -- memory`): just those parts (hooks, agents, memory, mqtt, jobs, isolation).
  const words = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? (words.length ? words.join(',') : undefined);
  const runs = (part: string) => !only || only.split(',').includes(part);
  const runtimeBytes = runs('hooks') ? await benchHooks() : 0;
  if (runs('agents')) await benchFootprint();
  if (runs('memory')) await benchNodeLines();
  if (runs('mqtt')) await benchMqttMemory();
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
