/**
 * The `agent-hosts` peer relation: what each unit publishes of itself (its hostname, its agents,
 * the placement version it acted on) and the leader's placement, read and written through the
 * framework's data bags and validated here (a peer's bag is input like any other). The rules
 * are placement.ts's; this module only reads, decides with them, and writes.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { ActiveStatus, BlockedStatus, type Model, type Relation } from '../ops';
import { agentsRootOf } from './agents';
import { readIfExists } from './driver';
import type { Host } from './host';
import { agentsAwaitingRelease, agentsPlacedOn, EMPTY_PLACEMENT, nextPlacement, placementSummary, unitAgentsReport, type CatalogAgent, type Placement, type UnitReport } from './placement';
import { HOSTNAME, PLACEMENT_FILE, readCatalog } from './placementpins';
import type { AgentShare } from './reconcile';
import { elide, SAFE_NAME } from './values';

export const PEER_ENDPOINT = 'agent-hosts';
const UNIT_NAME = /^[a-z][a-z0-9-]{0,62}\/\d{1,9}$/;
const version = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const unitBagSchema = z.object({
  hostname: z.string().regex(HOSTNAME).optional(),
  seen: version.default(0),
  agents: z
    .string()
    .max(1_000_000)
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'not JSON' });
        return z.NEVER;
      }
    })
    .pipe(z.record(z.string().regex(SAFE_NAME), z.enum(['running', 'stopping', 'stopped'])))
    .default('{}'),
});

const placementSchema = z.object({
  version,
  agents: z.record(
    z.string().regex(SAFE_NAME),
    z.object({
      target: z.string().regex(UNIT_NAME).nullable(),
      owner: z.string().regex(UNIT_NAME).nullable(),
      since: version,
      host: z.string().regex(HOSTNAME).optional(),
      problem: z.string().max(500).optional(),
    }),
  ),
});

/** How this unit last saw the placement (kept in the host state between events). */
export interface PlacementView {
  /** alone: no peer relation, every agent runs here; peers: the leader's placement; leaving: none. */
  readonly mode: 'alone' | 'peers' | 'leaving';
  /** The repo revision and config-dir the view was worked out for. */
  readonly basis: string;
  /** The agents this unit may run. */
  readonly run: readonly string[];
  /** Agents placed here that another unit still has to stop: name → that unit. */
  readonly waiting: Readonly<Record<string, string>>;
  /** Agents this unit runs that are no longer placed here, kept until their job ends. */
  readonly stopping: readonly string[];
  /** Pins ignored or unreadable, said in the status. */
  readonly notes: readonly string[];
  /** The placement version acted on. */
  readonly version: number;
  /** The leader's summary of the placement (its application status). */
  readonly summary: string | null;
  /** On the leader: agents no unit can run (pinned to a host with no unit, or a bad pin). */
  readonly unplaced: readonly string[];
}

/** This unit's hostname: a sandbox may name its own in <root>/etc/hostname (several share a machine). */
export function unitHostname(host: Pick<Host, 'paths' | 'driver'>): string {
  const own = host.driver.kind === 'sandbox' ? readIfExists(path.join(host.paths.root, 'etc', 'hostname')).trim() : '';
  const name = (own || os.hostname()).toLowerCase();
  return HOSTNAME.test(name) ? name : '';
}

export function parseUnitReport(unit: string, bag: Readonly<Record<string, string>>): UnitReport {
  const parsed = unitBagSchema.safeParse(bag);
  // A bag that does not parse reports nothing: the unit is no target, and holds what it held.
  if (!parsed.success) return { unit, hostname: '', seen: 0, agents: {} };
  return { unit, hostname: parsed.data.hostname ?? '', seen: parsed.data.seen, agents: parsed.data.agents };
}

export function parsePlacement(bag: Readonly<Record<string, string>>): Placement {
  const text = bag['placement'];
  if (text === undefined) return EMPTY_PLACEMENT;
  try {
    return placementSchema.parse(JSON.parse(text)) as Placement;
  } catch {
    return EMPTY_PLACEMENT;
  }
}

/** When only one unit is in the application, pins are ignored: every agent runs there, as before peers. */
function ignoringPins(catalog: readonly CatalogAgent[], hostname: string): { agents: CatalogAgent[]; notes: string[] } {
  const notes: string[] = [];
  for (const agent of catalog) {
    if (agent.pinProblem !== undefined) notes.push(`${agent.name}: ${agent.pinProblem}, ignored (one unit)`);
    else if (agent.pin !== undefined && agent.pin !== hostname) notes.push(`${agent.name} pinned to ${agent.pin}, runs here (one unit)`);
  }
  return { agents: catalog.map((a) => ({ name: a.name })), notes };
}

/** What one event works out before the reconcile and publishes after it. */
export interface PeerRound {
  readonly relation: Relation | undefined;
  readonly leader: boolean;
  readonly catalog: readonly CatalogAgent[];
  readonly reports: readonly UnitReport[];
  readonly placement: Placement;
  readonly view: PlacementView;
}

export interface PeerInputs {
  readonly unit: string;
  readonly hostname: string;
  readonly basis: string;
  readonly catalog: readonly CatalogAgent[];
  /** The agents with a program file here now, and those of them kept until their job ends. */
  readonly applied: readonly string[];
  readonly stopping: readonly string[];
  readonly seen: number;
}

function aloneView(inputs: PeerInputs): PlacementView {
  const { notes } = ignoringPins(inputs.catalog, inputs.hostname);
  return { mode: 'alone', basis: inputs.basis, run: inputs.catalog.map((a) => a.name), waiting: {}, stopping: [], notes, version: 0, summary: null, unplaced: [] };
}

export function leavingView(basis: string): PlacementView {
  return { mode: 'leaving', basis, run: [], waiting: {}, stopping: [], notes: ['leaving the application: no agents run here'], version: 0, summary: null, unplaced: [] };
}

/**
 * Reads the peers and decides which agents this unit may run. The leader places the agents first
 * (nextPlacement); a unit alone in the relation ignores pins. Without the relation (no peers
 * declared, as in a charm that predates them), every agent runs here.
 */
export async function placeAgents(relation: Relation | undefined, leader: boolean, inputs: PeerInputs): Promise<PeerRound> {
  if (!relation) return { relation, leader, catalog: inputs.catalog, reports: [], placement: EMPTY_PLACEMENT, view: aloneView(inputs) };
  const reports = await Promise.all(relation.units.map(async (unit) => parseUnitReport(unit, await relation.data.remoteUnit(unit).get())));
  const stored = parsePlacement(await relation.data.localApp.get());
  const alone = relation.units.length === 0;
  const { agents: catalog, notes } = alone ? ignoringPins(inputs.catalog, inputs.hostname) : { agents: [...inputs.catalog], notes: pinNotes(inputs.catalog) };
  const own = ownReport(stored, inputs);
  const placement = leader ? nextPlacement(stored, catalog, [own, ...reports]) : stored;
  const waiting = agentsAwaitingRelease(placement, inputs.unit);
  const awaitingLeader = !leader && placement.version === 0 ? ['waiting for the leader to place the agents'] : [];
  const view: PlacementView = {
    mode: 'peers',
    basis: inputs.basis,
    run: agentsPlacedOn(placement, inputs.unit),
    waiting,
    stopping: inputs.stopping,
    notes: [...awaitingLeader, ...notes],
    version: placement.version,
    ...leaderSummary(leader, placement),
  };
  return { relation, leader, catalog, reports, placement, view };
}

/** Bad pins, said by every unit (the leader's status names them unplaced too). */
function pinNotes(catalog: readonly CatalogAgent[]): string[] {
  return catalog.filter((a) => a.pinProblem !== undefined).map((a) => `${a.name}: ${a.pinProblem ?? PLACEMENT_FILE}`);
}

function ownReport(placement: Placement, inputs: PeerInputs): UnitReport {
  return { unit: inputs.unit, hostname: inputs.hostname, seen: inputs.seen, agents: unitAgentsReport(placement, inputs.unit, inputs.applied, inputs.stopping) };
}

/** Sets the keys that differ from the bag's; nothing when none does (a quiet hook wakes no unit). */
async function updateChanged(bag: { get(): Promise<Readonly<Record<string, string>>>; update(values: Record<string, string>): Promise<void> }, values: Record<string, string>): Promise<void> {
  const current = await bag.get();
  const changed = Object.fromEntries(Object.entries(values).filter(([key, value]) => current[key] !== value));
  if (Object.keys(changed).length > 0) await bag.update(changed);
}

/**
 * After the reconcile: this unit says what it runs now and which version it acted on; the leader
 * places again with that (an agent it just stopped may pass to its new owner at once) and
 * writes the placement when it changed. Returns the view with the placement written.
 */
export async function publishRound(round: PeerRound, inputs: PeerInputs): Promise<PlacementView> {
  const { relation } = round;
  if (!relation || round.view.mode !== 'peers') return { ...round.view, stopping: inputs.stopping };
  const acted: PeerInputs = { ...inputs, seen: round.placement.version };
  let placement = round.placement;
  if (round.leader) {
    placement = nextPlacement(placement, round.catalog, [ownReport(placement, acted), ...round.reports]);
    await updateChanged(relation.data.localApp, { placement: JSON.stringify(placement) });
  }
  const own = ownReport(placement, { ...acted, seen: placement.version });
  await updateChanged(relation.data.localUnit, { hostname: inputs.hostname, seen: String(own.seen), agents: JSON.stringify(own.agents) });
  return {
    ...round.view,
    stopping: inputs.stopping,
    version: placement.version,
    waiting: agentsAwaitingRelease(placement, inputs.unit),
    ...leaderSummary(round.leader, placement),
  };
}

function leaderSummary(leader: boolean, placement: Placement): Pick<PlacementView, 'summary' | 'unplaced'> {
  if (!leader) return { summary: null, unplaced: [] };
  const { text, unplaced } = placementSummary(placement);
  return { summary: text, unplaced };
}

/** Alone, every agent of the repo runs here, as it did before peers (bad ones are reported here too). */
function shareOf(view: PlacementView): AgentShare {
  return { run: view.mode === 'alone' ? 'every' : new Set(view.run), stopNow: false };
}

/** What the charm gives the placement for one event. */
export interface PeerPlacementDeps {
  readonly model: Model;
  readonly unitName: string;
  readonly host: Pick<Host, 'paths' | 'driver'>;
  readonly log: (message: string) => Promise<void>;
}

/**
 * One event's part in the placement: `share` before the reconcile (which agents run here),
 * `publish` after it (what runs here now; the leader's placement and application status). The
 * peers are read only when the event is about them (a peer hook, leader-elected), when the repo
 * changed, or while an agent here waits for its job to end; any other hook keeps the last view.
 */
export class PeerPlacement {
  /** Set for peer hooks and leader-elected: the peers' data may have changed. */
  fresh = false;
  /** Set when this unit leaves the relation (departed for itself, broken): nothing runs here. */
  leaving = false;
  private round: { round: PeerRound; inputs: PeerInputs } | undefined;

  constructor(private readonly deps: PeerPlacementDeps) {}

  async share(previous: PlacementView | null, applied: readonly string[], configDir: string, revision: string): Promise<AgentShare> {
    const basis = `${revision} ${configDir}`;
    this.round = undefined;
    if (this.leaving || previous?.mode === 'leaving') return { run: new Set(), stopNow: true };
    if (!this.fresh && previous && previous.basis === basis && previous.stopping.length === 0) return shareOf(previous);
    const { model, host, unitName } = this.deps;
    const relation = (await model.relations(PEER_ENDPOINT))[0];
    const leader = relation ? await model.isLeader() : false;
    const inputs: PeerInputs = {
      unit: unitName,
      hostname: unitHostname(host),
      basis,
      catalog: readCatalog(agentsRootOf(host, configDir)),
      applied,
      stopping: previous?.stopping ?? [],
      seen: previous?.version ?? 0,
    };
    const round = await placeAgents(relation, leader, inputs);
    this.round = { round, inputs };
    return shareOf(round.view);
  }

  /** The view to keep after a reconcile that applied `share`'s answer. */
  async publish(previous: PlacementView | null, applied: readonly string[], stopping: readonly string[], configDir: string, revision: string): Promise<PlacementView | null> {
    if (this.leaving || previous?.mode === 'leaving') return leavingView(`${revision} ${configDir}`);
    if (!this.round) return previous;
    const { round, inputs } = this.round;
    const view = await publishRound(round, { ...inputs, applied, stopping });
    const said = new Set(previous?.notes ?? []);
    for (const note of view.notes.filter((n) => !said.has(n))) await this.deps.log(`placement: ${note}`);
    if (round.leader && view.summary !== null && view.summary !== previous?.summary) {
      await this.deps.model.setAppStatus(view.unplaced.length > 0 ? new BlockedStatus(elide(view.summary, 200)) : new ActiveStatus(elide(view.summary, 200)));
    }
    return view;
  }
}
