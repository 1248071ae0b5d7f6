/**
 * Where each agent runs when one application has several units, and the rule that no agent ever
 * runs on two of them. Pure: the peer relation's data in, decisions out (peers.ts reads and
 * writes the data bags). The protocol and its invariants: docs/architecture.md, "Placement".
 *
 * - The leader works out each agent's `target` unit: its pin's host (placementpins.ts), or, when
 *   unpinned, by rendezvous hashing over the units (highest random weight): adding a unit moves
 *   only the agents that now score highest on it, removing one moves only its own agents.
 * - The leader names one `owner` per agent: the only unit that may run it. Ownership passes to the
 *   target only once the old owner has seen the move (its `seen` version is at least the move's
 *   `since`) and no other unit lists the agent as running or stopping.
 * - A unit runs an agent only when it is both the owner and the target; an agent it runs that is
 *   no longer placed there stops once it has no job (reconcile.ts), and the unit says so.
 */
import { createHash } from 'node:crypto';

/** A unit's own report in its bag: the agents it has, as the supervisor runs them. */
export type AgentRunState = 'running' | 'stopping' | 'stopped';

export interface UnitReport {
  readonly unit: string;
  /** Empty until the unit has published it; such a unit is no target. */
  readonly hostname: string;
  /** The placement version the unit last acted on. */
  readonly seen: number;
  readonly agents: Readonly<Record<string, AgentRunState>>;
}

export interface AgentPlacement {
  /** Where the agent should run; null when it cannot be placed (pinned to a host with no unit). */
  readonly target: string | null;
  /** The one unit that may run it now; null while no unit may. */
  readonly owner: string | null;
  /** The version at which `target` was last set. */
  readonly since: number;
  /** The host it is pinned to, if it is. */
  readonly host?: string;
  /** Why it is not placed, when a pin cannot be read. */
  readonly problem?: string;
}

export interface Placement {
  readonly version: number;
  readonly agents: Readonly<Record<string, AgentPlacement>>;
}

export const EMPTY_PLACEMENT: Placement = { version: 0, agents: {} };

/** An agent of the config repo, with its pin (placementpins.ts). */
export interface CatalogAgent {
  readonly name: string;
  readonly pin?: string;
  /** A pin file that cannot be read: the agent is not placed (peers) or runs here (alone). */
  readonly pinProblem?: string;
}

/** The rendezvous weight of an agent on a unit: a hash of both, the same on every unit. */
function weight(agent: string, unit: string): string {
  return createHash('sha256').update(`${agent}\0${unit}`).digest('hex');
}

/** The unit that scores highest for the agent (ties broken by name); undefined when there is none. */
export function rendezvousUnit(agent: string, units: readonly string[]): string | undefined {
  let best: { unit: string; score: string } | undefined;
  for (const unit of units) {
    const score = weight(agent, unit);
    if (!best || score > best.score || (score === best.score && unit < best.unit)) best = { unit, score };
  }
  return best?.unit;
}

/**
 * Each agent's target among the units that published a hostname: its pin's unit (the first by
 * name if two units report one host), or the rendezvous unit. A pin to a host with no unit, or a
 * pin that cannot be read, leaves the agent without a target.
 */
export function targetsFor(agents: readonly CatalogAgent[], units: readonly UnitReport[]): Record<string, string | null> {
  const placeable = units.filter((u) => u.hostname !== '').map((u) => u.unit).sort();
  const byHost = new Map<string, string>();
  for (const u of [...units].sort((a, b) => (a.unit < b.unit ? -1 : 1))) if (u.hostname && !byHost.has(u.hostname)) byHost.set(u.hostname, u.unit);
  const targets: Record<string, string | null> = {};
  for (const agent of agents) {
    if (agent.pinProblem !== undefined) targets[agent.name] = null;
    else if (agent.pin !== undefined) targets[agent.name] = byHost.get(agent.pin) ?? null;
    else targets[agent.name] = rendezvousUnit(agent.name, placeable) ?? null;
  }
  return targets;
}

const holds = (report: UnitReport | undefined, agent: string) => {
  const state = report?.agents[agent];
  return state === 'running' || state === 'stopping';
};

/**
 * Whether ownership of the agent may pass to its target now: the old owner (if it is still in
 * the relation) has acted on the move, and no unit but the target holds the agent.
 */
function mayHandOver(agent: string, entry: AgentPlacement, reports: ReadonlyMap<string, UnitReport>): boolean {
  const oldOwner = entry.owner === null ? undefined : reports.get(entry.owner);
  if (oldOwner && oldOwner.seen < entry.since) return false;
  return [...reports.values()].every((r) => r.unit === entry.target || !holds(r, agent));
}

/**
 * The leader's next placement from the last one, the repo's agents and every unit's report (the
 * leader's own included). The version goes up only when something changed, so a quiet hook
 * writes nothing and wakes no unit.
 */
export function nextPlacement(previous: Placement, agents: readonly CatalogAgent[], reports: readonly UnitReport[]): Placement {
  const version = previous.version + 1;
  const targets = targetsFor(agents, reports);
  const byUnit = new Map(reports.map((r) => [r.unit, r]));
  const next: Record<string, AgentPlacement> = {};
  for (const agent of agents) {
    const before = previous.agents[agent.name] ?? { target: null, owner: null, since: 0 };
    const target = targets[agent.name] ?? null;
    // A new target starts a move: `since` is the version the old owner must have seen.
    let entry: AgentPlacement = { target, owner: before.owner, since: before.target === target ? before.since : version };
    if (entry.owner !== entry.target && mayHandOver(agent.name, entry, byUnit)) entry = { ...entry, owner: entry.target };
    if (agent.pin !== undefined) entry = { ...entry, host: agent.pin };
    if (agent.pinProblem !== undefined) entry = { ...entry, problem: agent.pinProblem };
    next[agent.name] = entry;
  }
  const changed = JSON.stringify(next) !== JSON.stringify(previous.agents);
  return changed ? { version, agents: next } : previous;
}

/** The agents this unit may run: those it owns and is the target of. */
export function agentsPlacedOn(placement: Placement, unit: string): string[] {
  return Object.entries(placement.agents)
    .filter(([, entry]) => entry.owner === unit && entry.target === unit)
    .map(([name]) => name)
    .sort();
}

/** Agents placed on this unit that another unit still has to stop: name → that unit (or "a unit"). */
export function agentsAwaitingRelease(placement: Placement, unit: string): Record<string, string> {
  const waiting: Record<string, string> = {};
  for (const [name, entry] of Object.entries(placement.agents)) if (entry.target === unit && entry.owner !== unit) waiting[name] = entry.owner ?? 'another unit';
  return waiting;
}

/** What this unit publishes of its agents: running, stopping after a job, or stopped for a move. */
export function unitAgentsReport(placement: Placement, unit: string, applied: readonly string[], stopping: readonly string[]): Record<string, AgentRunState> {
  const report: Record<string, AgentRunState> = {};
  for (const name of applied) report[name] = stopping.includes(name) ? 'stopping' : 'running';
  // The owner that let an agent go says so, until ownership passes on.
  for (const [name, entry] of Object.entries(placement.agents)) if (entry.owner === unit && entry.target !== unit && report[name] === undefined) report[name] = 'stopped';
  return report;
}

/** The leader's application status: how many agents on which unit, what is moving, what is unplaced. */
export function placementSummary(placement: Placement): { unplaced: string[]; text: string } {
  const perUnit = new Map<string, number>();
  const moving: string[] = [];
  const unplaced: string[] = [];
  for (const [name, entry] of Object.entries(placement.agents).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (entry.target === null) {
      unplaced.push(entry.problem !== undefined ? `${name} (bad pin)` : `${name} (pinned to ${entry.host ?? '?'}, no unit)`);
      continue;
    }
    if (entry.owner !== entry.target) moving.push(name);
    perUnit.set(entry.target, (perUnit.get(entry.target) ?? 0) + 1);
  }
  const units = [...perUnit].sort(([a], [b]) => (a < b ? -1 : 1)).map(([unit, count]) => `${unit}: ${count}`);
  const parts = [`placement v${placement.version}: ${units.join(', ') || 'no agents placed'}`];
  if (moving.length > 0) parts.push(`moving: ${moving.join(', ')}`);
  if (unplaced.length > 0) parts.push(`unplaced: ${unplaced.join(', ')}`);
  return { unplaced, text: parts.join('; ') };
}
