/**
 * What an operator asks about agents (`juju run ... agent-status` and the other operations):
 * which agents a selection names, and the facts of each one, from supervisord (state, pid,
 * uptime), the agent's own metrics (state, job, last successful poll), its offline markers, its
 * conf and the charm's state. Read-only; the actions that change things build on these facts.
 */
import { RESERVED_ACTION_KEY_SEGMENTS } from '../../ops/jujurules';
import { agentBusy, readAgentConfOf } from '../agents';
import type { Host } from '../host';
import { readMarkers, type Marker } from './markers';
import { MetricsPortError, metricsOwnerOf, scrapeAgent, SCRAPES_TOTAL_DEADLINE_MS, type AgentView } from './metrics';
import type { HostState } from '../state';
import type { ProcessInfo } from '../supervisor';
import { elide } from '../values';

/** Names or globs, comma-separated; `*` and `?` are the only special characters. */
const SELECTOR = /^[A-Za-z0-9._*?-]{1,64}$/;
/** Agents scraped at once: bounded, so a 500-agent host is not 500 sockets at a time. */
const SCRAPE_CONCURRENCY = 16;
/** An agent is stale once it has not polled for this many polling intervals (and this long). */
const STALE_INTERVALS = 3;
const STALE_MIN_SECONDS = 10;

export class SelectionError extends Error {
  override readonly name = 'SelectionError';
}

function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * The agents a comma-separated list of names or globs names, in the order of `known`; empty
 * means all. A bad pattern, or one that names no agent, is an error (a typo must not act on none).
 */
export function selectAgents(selection: string, known: readonly string[]): string[] {
  const patterns = selection
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (patterns.length === 0) return known.slice();
  const chosen = new Set<string>();
  for (const pattern of patterns) {
    if (!SELECTOR.test(pattern)) throw new SelectionError(`agents: ${JSON.stringify(elide(pattern, 40))} is not an agent name or glob`);
    const re = globRegExp(pattern);
    const matching = known.filter((name) => re.test(name));
    if (matching.length === 0) throw new SelectionError(`agents: no agent matches ${pattern}`);
    for (const name of matching) chosen.add(name);
  }
  return known.filter((name) => chosen.has(name));
}

/** What the agent's conf says that operations need. */
export interface AgentConfFacts {
  pollingInterval: number;
}

export interface AgentFacts {
  name: string;
  /** supervisord's view; undefined when it does not know the program. */
  process: ProcessInfo | undefined;
  /** The agent's own view, or why it could not be read. */
  view: AgentView | { error: string };
  markers: Marker[];
  port: number | undefined;
  conf: AgentConfFacts | undefined;
  /** Running a job: its metrics say so, or its bookkeeping directory exists (agentBusy). */
  busy: boolean;
  /** Seconds since the last successful poll (or since it started, if it never polled). */
  sincePoll: number | undefined;
  /** RUNNING, but no successful poll for a few polling intervals. */
  stale: boolean;
}

function readConfFacts(host: Host, configDir: string, name: string): AgentConfFacts | undefined {
  try {
    const conf = readAgentConfOf(host, configDir, name);
    return { pollingInterval: conf.polling_interval };
  } catch {
    return undefined;
  }
}

async function viewOf(host: Host, name: string, port: number | undefined, deadlineAt: number): Promise<AgentView | { error: string }> {
  if (port === undefined) return { error: 'no metrics port' };
  try {
    return await scrapeAgent(port, { owner: metricsOwnerOf(host, name), deadlineAt });
  } catch (error) {
    if (error instanceof MetricsPortError) return { error: error.message };
    return { error: `metrics unreachable: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` };
  }
}

function sincePollOf(process: ProcessInfo | undefined, view: AgentView | { error: string }, nowSeconds: number): number | undefined {
  if (!process || process.state !== 'RUNNING') return undefined;
  const since = 'error' in view || view.lastPoll === undefined ? process.start : view.lastPoll;
  return since > 0 ? Math.max(0, Math.round(nowSeconds - since)) : undefined;
}

/** What every agent's facts are read against: supervisord's clock, and when scraping ends. */
interface FactsClock {
  nowSeconds: number;
  scrapesDeadlineAt: number;
}

async function factsOf(host: Host, state: HostState, configDir: string, name: string, process: ProcessInfo | undefined, clock: FactsClock): Promise<AgentFacts> {
  const port = state.ports[name];
  const agentId = state.agentIds[name];
  const conf = readConfFacts(host, configDir, name);
  const view = process?.state === 'RUNNING' ? await viewOf(host, name, port, clock.scrapesDeadlineAt) : { error: 'not running' };
  const sincePoll = sincePollOf(process, view, clock.nowSeconds);
  const busy = (!('error' in view) && view.jobId !== undefined) || agentBusy(host, configDir, name);
  const staleAfter = Math.max(STALE_INTERVALS * (conf?.pollingInterval ?? 10), STALE_MIN_SECONDS);
  return {
    name,
    process,
    view,
    markers: readMarkers(host.paths, agentId && agentId !== name ? [name, agentId] : [name], host.driver.agentOwner(name)),
    port,
    conf,
    busy,
    sincePoll,
    // A job in progress does not poll: a long job is not a stall.
    stale: !busy && sincePoll !== undefined && sincePoll > staleAfter,
  };
}

/** Runs `work` over `items` with at most `limit` at a time, keeping the order of the results. */
async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await work(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The facts of the named agents, in their order; `processes` is supervisord's answer (null: down). */
export function gatherFacts(host: Host, state: HostState, configDir: string, names: readonly string[], processes: readonly ProcessInfo[] | null): Promise<AgentFacts[]> {
  const byName = new Map((processes ?? []).map((p) => [p.name, p]));
  const clock = { nowSeconds: processes?.[0]?.now ?? Date.now() / 1000, scrapesDeadlineAt: Date.now() + SCRAPES_TOTAL_DEADLINE_MS };
  return mapBounded(names, SCRAPE_CONCURRENCY, (name) => factsOf(host, state, configDir, name, byName.get(name), clock));
}

/** How one agent counts in the summary: supervisord's state unless RUNNING, then the agent's. */
function summaryLabel(facts: AgentFacts): string {
  const processState = facts.process?.state ?? 'MISSING';
  if (processState !== 'RUNNING') return processState;
  if (facts.stale) return 'stale';
  if ('error' in facts.view) return 'no metrics';
  const agentState = facts.view.state ?? 'starting';
  const reason = facts.markers.find((m) => !m.irregular && m.reason)?.reason;
  return agentState === 'offline' && reason ? `offline (${elide(reason, 24)})` : agentState;
}

/** "12 agents: 9 waiting, 1 test, 1 offline (repair), 1 FATAL": the largest groups first. */
export function summaryLine(facts: readonly AgentFacts[]): string {
  const counts = new Map<string, number>();
  for (const f of facts) counts.set(summaryLabel(f), (counts.get(summaryLabel(f)) ?? 0) + 1);
  const groups = [...counts].sort((a, b) => b[1] - a[1]).map(([label, n]) => `${n} ${label}`);
  return `${facts.length} agent${facts.length === 1 ? '' : 's'}: ${groups.join(', ')}`;
}

/** `5d 3h`, `2h 10m`, `4m 2s`: short enough for a result column. */
export function shortDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const parts: [number, string][] = [
    [Math.floor(s / 86400), 'd'],
    [Math.floor((s % 86400) / 3600), 'h'],
    [Math.floor((s % 3600) / 60), 'm'],
    [s % 60, 's'],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  if (first === -1) return '0s';
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n}${unit}`)
    .join(' ');
}

/**
 * Result keys for agents: Juju takes lowercase letters, digits and hyphens, so `Agent_7` becomes
 * `agent-7`; a name that collides, maps to nothing or is one Juju reserves (`stdout`) gets `agent-<n>` (each entry says its name).
 */
export function resultKeys(names: readonly string[]): Map<string, string> {
  const keys = new Map<string, string>();
  const used = new Set<string>();
  names.forEach((name, i) => {
    const base = name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
    let key = base && !used.has(base) && !RESERVED_ACTION_KEY_SEGMENTS.has(base) ? base : `agent-${i + 1}`;
    for (let n = 2; used.has(key); n++) key = `agent-${i + 1}-${n}`;
    used.add(key);
    keys.set(name, key);
  });
  return keys;
}
