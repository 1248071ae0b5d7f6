/**
 * Several units of one agent host application in the harness: each its own root, hostname and
 * in-memory supervisord, sharing the `agent-hosts` peer relation as Juju would carry it: a unit's
 * bag reaches the others (relation-changed for each), the leader's app bag reaches every other
 * unit (relation-changed without a remote unit). After every hook, no agent may run on two units.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { peerRelation, type EventSpec, type Output, type RelationState } from '../../src/ops/testing';
import { charmHarness, type CharmHarness } from './charm';

export const APP = 'testflinger-agent-host';
const PEERS = 'agent-hosts';
const RELATION_ID = 90;
/** More hooks than any scenario here needs to settle: past it the units never agree. */
const MAX_HOOKS = 200;

interface Unit {
  readonly name: string;
  readonly harness: CharmHarness;
  bag: Record<string, string>;
  last: Output | undefined;
  /** What the charm logged, every hook of this unit. */
  readonly logs: string[];
}

type Hook = { unit: string; event: (rel: RelationState) => EventSpec; label: string };

export class PeerUnits {
  readonly units = new Map<string, Unit>();
  /** Units in the peer relation (a unit leaves it before it goes). */
  readonly members: string[] = [];
  appBag: Record<string, string> = {};
  /** The application's status, as the leaders set it. */
  appStatus: Output['appStatus'];
  leader = '';
  /** Every hook run, in order, as "unit: hook". */
  readonly log: string[] = [];
  private readonly queue: Hook[] = [];

  constructor(private readonly config: Record<string, unknown>) {}

  unit(n: number): Unit {
    const found = this.units.get(`${APP}/${n}`);
    if (!found) throw new Error(`no unit ${n}`);
    return found;
  }

  /** Agents supervisord runs on a unit, sorted. */
  running(n: number): string[] {
    return [...this.unit(n).harness.supervisor.states].filter(([, state]) => state === 'RUNNING').map(([name]) => name).sort();
  }

  /** No agent is RUNNING on two units' supervisords. */
  assertNoDoubleRun(after: string): void {
    const where = new Map<string, string[]>();
    for (const unit of this.units.values()) {
      for (const [agent, state] of unit.harness.supervisor.states) if (state === 'RUNNING') where.set(agent, [...(where.get(agent) ?? []), unit.name]);
    }
    const twice = [...where].filter(([, units]) => units.length > 1);
    if (twice.length > 0) throw new Error(`after ${after}: ${twice.map(([a, u]) => `${a} runs on ${u.join(' and ')}`).join('; ')}\nhooks:\n${this.log.join('\n')}`);
  }

  /** A new unit, as `juju add-unit` makes it: its hooks up to start, then it joins its peers. */
  async add(n: number, options: { leader?: boolean } = {}): Promise<void> {
    const name = `${APP}/${n}`;
    const harness = charmHarness({ unitName: name });
    fs.mkdirSync(path.join(harness.root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(harness.root, 'etc', 'hostname'), `host-${n}\n`);
    this.units.set(name, { name, harness, bag: {}, last: undefined, logs: [] });
    const peers = [...this.members];
    this.members.push(name);
    if (options.leader) this.leader = name;
    await this.run({ unit: name, label: 'agent-hosts-relation-created', event: (rel) => harness.ctx.on.relationCreated(rel) });
    if (options.leader) await this.run({ unit: name, label: 'leader-elected', event: () => harness.ctx.on.leaderElected() });
    await this.run({ unit: name, label: 'config-changed', event: () => harness.ctx.on.configChanged() });
    for (const peer of peers) {
      this.enqueue(peer, 'joined', name);
      this.enqueue(name, 'joined', peer);
    }
    await this.settle();
  }

  /**
   * `juju remove-unit`: the leaving unit's departed (one per peer) and broken hooks run first,
   * then the others see it depart (a leaving leader hands leadership to the first unit left),
   * and its remove hook runs last.
   */
  async remove(n: number): Promise<void> {
    const name = `${APP}/${n}`;
    const unit = this.unit(n);
    const others = this.members.filter((m) => m !== name);
    this.members.splice(this.members.indexOf(name), 1);
    const seen = [...others];
    for (const peer of others) {
      seen.splice(seen.indexOf(peer), 1);
      await this.run({ unit: name, label: `agent-hosts-relation-departed ${peer}`, event: (rel) => unit.harness.ctx.on.relationDeparted(this.viewWithout(rel, seen), { remoteUnit: peer, departingUnit: name }) });
    }
    await this.run({ unit: name, label: 'agent-hosts-relation-broken', event: (rel) => unit.harness.ctx.on.relationBroken({ ...rel, remoteUnitsData: {} }) });
    // The others see it go once it has left the relation; its stop and remove hooks come later.
    for (const peer of others) await this.run({ unit: peer, label: `agent-hosts-relation-departed ${name}`, event: (rel) => this.unitByName(peer).harness.ctx.on.relationDeparted(rel, { remoteUnit: name, departingUnit: name }) });
    if (this.leader === name) await this.elect(others[0] as string);
    await this.settle();
    await this.run({ unit: name, label: 'remove', event: () => unit.harness.ctx.on.remove() });
    this.units.delete(name);
  }

  /** Leadership moves to another unit: it runs leader-elected. */
  async elect(name: string): Promise<void> {
    this.leader = name;
    await this.run({ unit: name, label: 'leader-elected', event: () => this.unitByName(name).harness.ctx.on.leaderElected() });
  }

  async hook(n: number, label: string, event: (harness: CharmHarness) => EventSpec): Promise<Output> {
    const unit = this.unit(n);
    await this.run({ unit: unit.name, label, event: () => event(unit.harness) });
    await this.settle();
    return unit.last as Output;
  }

  private viewWithout(rel: RelationState, keep: readonly string[]): RelationState {
    return { ...rel, remoteUnitsData: Object.fromEntries(Object.entries(rel.remoteUnitsData).filter(([u]) => keep.includes(u))) };
  }

  private unitByName(name: string): Unit {
    const found = this.units.get(name);
    if (!found) throw new Error(`no unit ${name}`);
    return found;
  }

  private enqueue(unit: string, kind: 'joined' | 'changed', remote?: string): void {
    const ctx = this.unitByName(unit).harness.ctx;
    const event = (rel: RelationState) => (kind === 'joined' && remote ? ctx.on.relationJoined(rel, { remoteUnit: remote }) : ctx.on.relationChanged(rel, remote ? { remoteUnit: remote } : {}));
    this.queue.push({ unit, label: `agent-hosts-relation-${kind} ${remote ?? '(app)'}`, event });
  }

  /** Runs queued hooks (each may queue more) until the units are quiet. */
  async settle(): Promise<void> {
    for (let n = 0; n < MAX_HOOKS; n++) {
      const next = this.queue.shift();
      if (!next) return;
      if (this.units.has(next.unit) && this.members.includes(next.unit)) await this.run(next);
    }
    throw new Error(`the units did not settle within ${MAX_HOOKS} hooks:\n${this.log.slice(-30).join('\n')}`);
  }

  private relationFor(unit: Unit): RelationState {
    const peersData = Object.fromEntries(this.members.filter((m) => m !== unit.name).map((m) => [m, { ...this.unitByName(m).bag }]));
    return peerRelation({ endpoint: PEERS, id: RELATION_ID, peersData, localUnitData: { ...unit.bag }, localAppData: { ...this.appBag } });
  }

  private async run(hook: Hook): Promise<void> {
    const unit = this.unitByName(hook.unit);
    const inRelation = this.members.includes(unit.name) || hook.label.startsWith('agent-hosts-relation-');
    const rel = this.relationFor(unit);
    const out = await unit.harness.ctx.run(hook.event(rel), { config: this.config, leader: this.leader === unit.name, ...(this.appStatus ? { appStatus: this.appStatus } : {}), relations: inRelation && hook.label !== 'remove' ? [rel] : [] });
    unit.last = out;
    if (this.leader === unit.name) this.appStatus = out.appStatus;
    unit.logs.push(...out.logs.map((l) => l.message));
    this.log.push(`${unit.name}: ${hook.label}`);
    const after = out.relations.find((r) => r.endpoint === PEERS);
    if (after && this.members.includes(unit.name)) this.carry(unit, after);
    this.assertNoDoubleRun(`${unit.name}: ${hook.label}`);
  }

  /** What Juju does with a hook's relation-set: the others see it in a relation-changed. */
  private carry(unit: Unit, after: RelationState): void {
    const others = this.members.filter((m) => m !== unit.name);
    if (JSON.stringify(after.localUnitData) !== JSON.stringify(unit.bag)) {
      unit.bag = { ...after.localUnitData };
      for (const other of others) this.enqueue(other, 'changed', unit.name);
    }
    if (this.leader === unit.name && JSON.stringify(after.localAppData) !== JSON.stringify(this.appBag)) {
      this.appBag = { ...after.localAppData };
      for (const other of others) this.enqueue(other, 'changed');
    }
  }
}
