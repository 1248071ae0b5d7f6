/**
 * The health loop of update-status. An agent supervisord gave up on (FATAL: it kept dying at
 * start; EXITED: it exited with a final code) is started again, with a backoff kept in the state
 * (1, 2, 4 ... 60 minutes between tries), forgotten once the agent has stayed RUNNING for a
 * while; one that keeps coming back down is a crash loop, named in the status. An agent RUNNING
 * without a successful poll for a few polling intervals is stale. Nothing here stops or signals
 * a process: a running job is never touched.
 */
import { BlockedStatus, type StatusBase } from '../../ops';
import { gatherFacts, shortDuration, summaryLine, type AgentFacts } from './facts';
import type { Operation } from './actions';
import type { AgentHealth, HostState } from '../state';
import { STATUS_MAX } from '../unitstatus';
import { elide } from '../values';

const BACKOFF_FIRST_MS = 60_000;
const BACKOFF_MAX_MS = 60 * 60_000;
/** RUNNING this long since its last start: the agent is well again and its backoff is reset. */
export const STABLE_SECONDS = 10 * 60;
/** Restarted, and found down again: from the second restart on it is a crash loop. */
const CRASH_LOOP_RESTARTS = 2;
/**
 * States the loop restarts. BACKOFF is left to supervisord, which is still retrying (a start
 * call is refused then) and ends it RUNNING or FATAL; STOPPED is an operator's stop.
 */
const GIVEN_UP = new Set(['FATAL', 'EXITED']);
const NAMES_SHOWN = 2;

export function backoffMs(restarts: number): number {
  return Math.min(BACKOFF_FIRST_MS * 2 ** Math.max(0, restarts - 1), BACKOFF_MAX_MS);
}

export interface HealthResult {
  health: Record<string, AgentHealth>;
  staleAgents: Record<string, number>;
  restartRequests: Record<string, string>;
  /** The agents started this time. */
  restarted: string[];
  /** Refusals from supervisord, by agent. */
  refused: Record<string, string>;
  /** The summary line, counting the agents just started as `restarted`. */
  summary: string;
}

/** What the loop does for one agent: its next backoff entry, and whether to start it now. */
function decide(facts: AgentFacts, entry: AgentHealth | undefined, nowMs: number): { entry: AgentHealth | undefined; start: boolean } {
  const p = facts.process;
  if (p && GIVEN_UP.has(p.state)) {
    const current = entry ?? { restarts: 0, nextTryAt: 0 };
    if (nowMs < current.nextTryAt) return { entry: current, start: false };
    const restarts = current.restarts + 1;
    return { entry: { restarts, nextTryAt: nowMs + backoffMs(restarts) }, start: true };
  }
  if (p?.state === 'RUNNING' && p.start > 0 && p.now - p.start >= STABLE_SECONDS) return { entry: undefined, start: false };
  return { entry, start: false };
}

export async function checkHealth(op: Operation, nowMs: number): Promise<HealthResult | undefined> {
  const control = op.host.supervisor;
  const processes = await control.processes();
  if (processes === null) return undefined;
  // An agent whose conf is bad exits 2 at every start: restarting it cannot help.
  const names = Object.keys(op.state.appliedPrograms)
    .filter((n) => op.state.invalidAgents[n] === undefined)
    .sort();
  const facts = await gatherFacts(op.host, op.state, op.configDir, names, processes);
  const health: Record<string, AgentHealth> = {};
  const staleAgents: Record<string, number> = {};
  const toStart: string[] = [];
  for (const f of facts) {
    const { entry, start } = decide(f, op.state.health[f.name], nowMs);
    if (entry) health[f.name] = entry;
    if (start) toStart.push(f.name);
    if (f.stale && f.sincePoll !== undefined) staleAgents[f.name] = f.sincePoll;
  }
  const refused = await control.start(toStart);
  const restarted = toStart.filter((n) => !(n in refused));
  const at = new Date(nowMs).toISOString().replace(/\.\d+Z$/, 'Z');
  const restartRequests = { ...op.state.restartRequests };
  for (const name of restarted) restartRequests[name] = `${at} start by update-status (try ${health[name]?.restarts})`;
  const counted = facts.map((f) => (restarted.includes(f.name) && f.process ? { ...f, process: { ...f.process, state: 'restarted' } } : f));
  return { health, staleAgents, restartRequests, restarted, refused, summary: summaryLine(counted) };
}

function names(list: readonly string[], describe: (name: string) => string): string {
  const shown = list.slice(0, NAMES_SHOWN).map((n) => `${elide(n, 30)} (${describe(n)})`);
  return list.length > NAMES_SHOWN ? `${shown.join(', ')} and ${list.length - NAMES_SHOWN} more` : shown.join(', ');
}

/** "crash loop: agent-2 (3 restarts, next restart in 4m at the earliest)", or undefined. */
function crashLoopNote(state: HostState, nowMs: number): string | undefined {
  const looping = Object.keys(state.health)
    .filter((n) => (state.health[n]?.restarts ?? 0) >= CRASH_LOOP_RESTARTS)
    .sort();
  if (looping.length === 0) return undefined;
  // "next restart": when the loop may start it again if it is found down (it may be up now).
  const wait = (n: string) => Math.max(0, ((state.health[n]?.nextTryAt ?? nowMs) - nowMs) / 1000);
  return `crash loop: ${names(looping, (n) => `${state.health[n]?.restarts} restarts, next restart in ${shortDuration(wait(n))} at the earliest`)}`;
}

/** "stale: agent-3 (no poll for 5m)": said after the agents' status (unitStatus's notes). */
export function staleNotes(state: HostState): string[] {
  const stale = Object.keys(state.staleAgents).sort();
  return stale.length > 0 ? [`stale: ${names(stale, (n) => `no poll for ${shortDuration(state.staleAgents[n] ?? 0)}`)}`] : [];
}

/** Every note the health loop adds to the status, in the order said: what they take of its line. */
export function healthNotes(state: HostState, nowMs: number): string[] {
  const crashLoop = crashLoopNote(state, nowMs);
  return [...(crashLoop ? [crashLoop] : []), ...staleNotes(state)];
}

/**
 * The health loop's own component of the unit status: a crash loop needs an operator whatever
 * else the status says, so it blocks, named before the agents' status. Undefined without one.
 * At most STATUS_MAX characters.
 */
export function crashLoopStatus(state: HostState, agents: StatusBase, nowMs: number): StatusBase | undefined {
  const note = Object.keys(state.appliedPrograms).length > 0 ? crashLoopNote(state, nowMs) : undefined;
  return note ? new BlockedStatus(elide(`${note}; ${agents.message}`, STATUS_MAX)) : undefined;
}
