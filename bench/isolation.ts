/**
 * What containment and the test sandbox cost per phase: `true` run through the agent's phase
 * runner in each mode this machine supports, against a bare spawn of `/bin/sh -c true` measured
 * in the same run, the modes interleaved so that load hits them alike. By hand:
 *
 *   npx esbuild bench/isolation.ts --bundle --platform=node --outfile=/tmp/isolation-bench.js && node /tmp/isolation-bench.js [rounds]
 *
 * (as root for the cgroup rows; any user for the PID namespace and sandbox rows).
 */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import { systemClock } from '../src/agent/clock';
import { chooseContainment, processGroupScope, type Containment, type PhaseScope } from '../src/agent/containment';
import { probeSandbox, sandboxArgv } from '../src/agent/containment-sandbox';
import { runPhaseProcess } from '../src/agent/process';
import { median } from './measure';

export interface IsolationRow {
  mode: string;
  medianMs: number;
  /** Against the bare spawn of the same run. */
  ratio: number;
}

interface Mode {
  name: string;
  run: () => Promise<unknown>;
}

function bareSpawn(): Promise<unknown> {
  return new Promise((resolve) => spawn('/bin/sh', ['-c', 'true'], { stdio: 'ignore' }).on('close', resolve));
}

function phase(scope: () => PhaseScope, sandbox?: string[]): () => Promise<unknown> {
  return () => runPhaseProcess({ command: 'true', cwd: os.tmpdir(), env: { PATH: '/usr/bin:/bin' }, onOutput: () => undefined, clock: systemClock, scope: scope(), ...(sandbox ? { sandbox } : {}) });
}

function modes(): Mode[] {
  const cwd = os.tmpdir();
  const sandbox = probeSandbox('/usr/bin/bwrap') ? undefined : sandboxArgv({ program: '/usr/bin/bwrap', hidden: [] }, { runDir: cwd });
  const found: Mode[] = [
    { name: 'bare spawn of /bin/sh -c true (baseline)', run: bareSpawn },
    { name: 'phase runner, process group only (before this change)', run: phase(processGroupScope) },
  ];
  const kinds: [string, Containment][] = [
    ['cgroup', chooseContainment({ TESTFLINGER_CONTAINMENT: 'cgroup' })],
    ['pid-namespace', chooseContainment({ TESTFLINGER_CONTAINMENT: 'pid-namespace' })],
  ];
  for (const [wanted, containment] of kinds) {
    if (containment.kind !== wanted) continue;
    found.push({ name: `phase runner, ${wanted}`, run: phase(() => containment.openPhase(false)) });
    if (sandbox) found.push({ name: `phase runner, ${wanted} + test sandbox (bwrap)`, run: phase(() => containment.openPhase(true), sandbox) });
  }
  return found;
}

/** `rounds` runs of each mode, interleaved; the first round is a warm-up and not counted. */
export async function measureIsolation(rounds = 40): Promise<IsolationRow[]> {
  const all = modes();
  const times = all.map(() => [] as number[]);
  for (let round = 0; round <= rounds; round++) {
    for (const [i, mode] of all.entries()) {
      const start = process.hrtime.bigint();
      await mode.run();
      if (round > 0) times[i]?.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  const base = median(times[0] ?? [1]);
  return all.map((mode, i) => ({ mode: mode.name, medianMs: median(times[i] ?? []), ratio: median(times[i] ?? []) / base }));
}

export function isolationTable(rows: readonly IsolationRow[]): string {
  const lines = ['| mode | median per phase | × bare spawn |', '|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.mode} | ${r.medianMs.toFixed(1)} ms | ${r.ratio.toFixed(2)} |`);
  return lines.join('\n');
}

if (require.main === module) {
  const rounds = Number(process.argv[2] ?? 40);
  void measureIsolation(rounds).then((rows) => console.log(isolationTable(rows)));
}
