/**
 * `check-drift`: the managed files on the host that differ from what the charm would write now
 * (program files, phase scripts, SSH files, supervisord's limits, the runtime's `current` link),
 * each with a short summary. Read-only: expected contents come from the charm's own renderers,
 * and `driftFixState` hands the fix to the normal reconcile (charm.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readFileNoFollow, sha256, switchSymlink } from '../../common/fsutil';
import type { CharmConfig } from '../config';
import type { Host } from '../host';
import type { HostPaths } from '../paths';
import { currentRuntimeVersion } from '../runtime';
import { phaseScripts } from '../scripts';
import type { HostState } from '../state';
import { renderAgentProgram } from '../reconcile';

export interface Drift {
  /** The file, as the operator knows it (`agent-1.conf`, `tf-test`, `~ubuntu/.ssh/config`). */
  file: string;
  /** What differs: `2 lines differ (environment, startsecs)`, `missing`, `mode 0644, not 0775`. */
  what: string;
  /** The agent whose program file it is, if it is one. */
  agent?: string;
}

/** Managed files are small; a file past this is drift whatever it holds. */
const MAX_MANAGED_BYTES = 1024 * 1024;
const KEYS_SHOWN = 4;

function readManaged(file: string): { text: string; mode: number } | 'missing' | 'not a regular file' {
  try {
    const mode = fs.lstatSync(file).mode & 0o7777;
    return { text: readFileNoFollow(file, MAX_MANAGED_BYTES).toString('utf8'), mode };
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'not a regular file';
  }
}

/** The name a line sets (`environment` of `environment=...`), if it is such a line. */
const keyOf = (line: string) => /^([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line)?.[1];

/** "2 lines differ (environment, startsecs)": lines are compared as sets, keys named when they are settings. */
export function lineSummary(expected: string, actual: string): string {
  const want = expected.split('\n');
  const have = actual.split('\n');
  const missing = want.filter((l) => !have.includes(l));
  const extra = have.filter((l) => !want.includes(l));
  const count = Math.max(missing.length, extra.length);
  if (count === 0) return 'line order or blank lines differ';
  const keys = [...new Set([...missing, ...extra].map(keyOf).filter((k): k is string => k !== undefined))];
  const shown = keys.length > KEYS_SHOWN ? [...keys.slice(0, KEYS_SHOWN), `${keys.length - KEYS_SHOWN} more`] : keys;
  return `${count} line${count === 1 ? '' : 's'} differ${count === 1 ? 's' : ''}${shown.length > 0 ? ` (${shown.join(', ')})` : ''}`;
}

function compareFile(label: string, file: string, expected: string, mode: number): Drift | undefined {
  const actual = readManaged(file);
  if (typeof actual === 'string') return { file: label, what: actual };
  if (actual.text !== expected) return { file: label, what: lineSummary(expected, actual.text) };
  if (actual.mode !== mode) return { file: label, what: `mode ${actual.mode.toString(8).padStart(4, '0')}, not ${mode.toString(8).padStart(4, '0')}` };
  return undefined;
}

/**
 * A program file drifted when it is not what the charm last wrote (the hash in the state). The
 * summary compares it with the file rendered now; when that rendering is not what the charm
 * wrote either (its inputs changed since), the summary says so instead of naming lines.
 */
function programDrift(host: Host, config: CharmConfig, state: HostState, name: string): Drift | undefined {
  const label = `${name}.conf`;
  const actual = readManaged(host.paths.programFile(name));
  if (typeof actual === 'string') return { file: label, what: actual, agent: name };
  if (sha256(actual.text) === state.appliedPrograms[name]) return undefined;
  let expected: string | undefined;
  try {
    expected = renderAgentProgram(host, config, name, state.ports[name] as number);
  } catch {
    expected = undefined;
  }
  const what = expected !== undefined && sha256(expected) === state.appliedPrograms[name] ? lineSummary(expected, actual.text) : 'differs from what the charm last wrote';
  return { file: label, what, agent: name };
}

function scriptDrift(host: Host, config: CharmConfig): Drift[] {
  return [...phaseScripts(host.renderer, host.paths, config['config-dir'])].map(([name, content]) => compareFile(name, path.join(host.paths.binDir, name), content, 0o775)).filter((d): d is Drift => d !== undefined);
}

/**
 * The SSH files the driver keeps: on a unit each agent's own, in root-owned homes; in a sandbox
 * the shared ones, which are ours. Either way nothing is read through a link (readManaged).
 */
function sshDrift(host: Host, config: CharmConfig, agents: readonly string[]): Drift[] {
  // An empty option leaves its file alone, so it has nothing to drift from.
  const wanted = host.driver.sshFiles(config, agents).filter((f) => f.content !== '');
  return wanted
    .map((f) => compareFile(f.label, f.file, f.content, f.mode))
    .filter((d): d is Drift => d !== undefined)
    .map((d) => (d.what.includes('differ') && d.file.endsWith('id_rsa') ? { ...d, what: 'content differs' } : d));
}

function runtimeDrift(host: Host, state: HostState): Drift[] {
  const current = currentRuntimeVersion(host.paths);
  if (state.runtimeVersion === null || current === state.runtimeVersion) return [];
  return [{ file: 'runtime current link', what: `points at ${current ?? 'nothing'}, not ${state.runtimeVersion}` }];
}

function limitsDrift(host: Host, state: HostState): Drift[] {
  const count = Object.keys(state.appliedPrograms).length;
  return host.driver.supervisord.limitsCurrent(count) ? [] : [{ file: 'supervisord limits', what: `minfds/minprocs are not those for ${count} agents` }];
}

/** Every managed file that differs, program files first (in agent order). */
export function findDrift(host: Host, config: CharmConfig, state: HostState): Drift[] {
  const agents = Object.keys(state.appliedPrograms).sort();
  const programs = agents.map((name) => programDrift(host, config, state, name)).filter((d): d is Drift => d !== undefined);
  return [...programs, ...scriptDrift(host, config), ...sshDrift(host, config, agents), ...limitsDrift(host, state), ...runtimeDrift(host, state)];
}

/**
 * The state to reconcile from so that the normal path restores the drift: the inputs hash
 * cleared (everything is rendered and written again, unchanged files untouched), and each
 * drifted program file marked as not applied, so supervisord rereads the files. supervisord
 * restarts only a program whose file differs from the one it runs: a hand edit it never read
 * restarts nothing, and the other agents are not touched.
 */
export function driftFixState(state: HostState, drift: readonly Drift[]): HostState {
  const appliedPrograms = { ...state.appliedPrograms };
  for (const d of drift) if (d.agent !== undefined) appliedPrograms[d.agent] = 'drifted';
  return { ...state, appliedInputs: '', appliedPrograms };
}

/** Points `current` back at the version the charm installed, when that version is still on disk. */
export function restoreRuntimeLink(paths: HostPaths, version: string | null): boolean {
  if (version === null || currentRuntimeVersion(paths) === version || !fs.existsSync(path.join(paths.runtimeVersionsDir, version))) return false;
  switchSymlink(paths.runtimeCurrent, path.join('versions', version));
  return true;
}

/** One line a file, as `juju run` shows a multi-line value. */
export function driftText(drift: readonly Drift[]): string {
  return drift.length > 0 ? drift.map((d) => `${d.file}: ${d.what}`).join('\n') : 'none';
}

/** Each program's pid (0 when down), to tell afterwards which ones a fix restarted. */
export async function processIds(host: Host): Promise<Map<string, number>> {
  return new Map(((await host.supervisor.processes()) ?? []).map((p) => [p.name, p.pid]));
}

export function changedPids(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): string[] {
  return [...before].filter(([name, pid]) => pid !== 0 && after.get(name) !== pid).map(([name]) => name);
}
