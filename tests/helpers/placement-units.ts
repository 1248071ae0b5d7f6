/**
 * Several units of one agent host application, sharing the `agent-hosts` peer relation as Juju
 * carries it: a unit's bag reaches the others (relation-changed for each), the leader's app bag
 * reaches every other unit (relation-changed without a remote unit). After every hook, no agent
 * may run on two units. The units are the harness's (PeerUnits: each its own root and in-memory
 * supervisord) or sandboxes with a real supervisord (placement-sandboxes.ts), behind one seam.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { peerRelation, type EventSpec, type Output, type RelationState } from '../../src/ops/testing';
import { charmHarness, type CharmHarness } from './charm';

export const APP = 'testflinger-agent-host';
export const PEERS = 'agent-hosts';
export const RELATION_ID = 90;
/** More hooks than any scenario here needs to settle: past it the units never agree. */
const MAX_HOOKS = 200;

/** One hook: a plain one (`config-changed`) or a peer relation's, with the remote side Juju names. */
export interface PeerHook {
  readonly name: string;
  readonly relationKind?: 'created' | 'joined' | 'changed' | 'departed' | 'broken';
  readonly remoteUnit?: string;
  readonly departingUnit?: string;
}

export interface HookInput {
  /** The relation as this unit sees it, or none (before it joins, after it left). */
  readonly relation: RelationState | undefined;
  readonly leader: boolean;
  readonly appStatus: { name: string; message: string } | undefined;
}

export interface HookOutput {
  readonly relation: RelationState | undefined;
  readonly appStatus: { name: string; message: string } | undefined;
  readonly unitStatus: { name: string; message: string } | undefined;
  readonly logs: readonly string[];
}

/** What the network needs of a unit: run a hook, and say which agents have a live process. */
export interface PeerMember {
  readonly name: string;
  run(hook: PeerHook, input: HookInput): Promise<HookOutput>;
  running(): Promise<string[]>;
}

interface Member<M extends PeerMember> {
  readonly member: M;
  bag: Record<string, string>;
  last: HookOutput | undefined;
  /** What the charm logged, every hook of this unit. */
  readonly logs: string[];
}

const unitName = (n: number) => `${APP}/${n}`;

export class PeerNetwork<M extends PeerMember> {
  readonly units = new Map<string, Member<M>>();
  /** Units in the peer relation (a unit leaves it before it goes). */
  readonly members: string[] = [];
  appBag: Record<string, string> = {};
  /** The application's status, as the leaders set it. */
  appStatus: HookOutput['appStatus'];
  leader = '';
  /** Every hook run, in order, as "unit: hook". */
  readonly log: string[] = [];
  private readonly queue: { unit: string; hook: PeerHook }[] = [];

  constructor(private readonly makeMember: (name: string, n: number) => M) {}

  unit(n: number): Member<M> {
    return this.unitByName(unitName(n));
  }

  running(n: number): Promise<string[]> {
    return this.unit(n).member.running();
  }

  /** No agent has a live process on two units. */
  async assertNoDoubleRun(after: string): Promise<void> {
    const where = new Map<string, string[]>();
    for (const unit of this.units.values()) for (const agent of await unit.member.running()) where.set(agent, [...(where.get(agent) ?? []), unit.member.name]);
    const twice = [...where].filter(([, units]) => units.length > 1);
    if (twice.length > 0) throw new Error(`after ${after}: ${twice.map(([a, u]) => `${a} runs on ${u.join(' and ')}`).join('; ')}\nhooks:\n${this.log.join('\n')}`);
  }

  /** A new unit, as `juju add-unit` makes it: install to start, then it joins its peers. */
  async add(n: number, options: { leader?: boolean } = {}): Promise<void> {
    const name = unitName(n);
    this.units.set(name, { member: this.makeMember(name, n), bag: {}, last: undefined, logs: [] });
    const peers = [...this.members];
    this.members.push(name);
    if (options.leader) this.leader = name;
    await this.run(name, { name: 'install' });
    await this.run(name, { name: `${PEERS}-relation-created`, relationKind: 'created' });
    if (options.leader) await this.run(name, { name: 'leader-elected' });
    await this.run(name, { name: 'config-changed' });
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
    const name = unitName(n);
    const others = this.members.filter((m) => m !== name);
    this.members.splice(this.members.indexOf(name), 1);
    for (const peer of others) await this.run(name, { name: `${PEERS}-relation-departed`, relationKind: 'departed', remoteUnit: peer, departingUnit: name });
    await this.run(name, { name: `${PEERS}-relation-broken`, relationKind: 'broken' });
    // The others see it go once it has left the relation; its stop and remove hooks come later.
    for (const peer of others) await this.run(peer, { name: `${PEERS}-relation-departed`, relationKind: 'departed', remoteUnit: name, departingUnit: name });
    if (this.leader === name) await this.elect(others[0] as string);
    await this.settle();
    await this.run(name, { name: 'remove' });
    this.units.delete(name);
  }

  /** Leadership moves to another unit: it runs leader-elected. */
  async elect(name: string): Promise<void> {
    this.leader = name;
    await this.run(name, { name: 'leader-elected' });
  }

  /** One hook on unit n, then whatever it sets off. */
  async hook(n: number, name: string): Promise<HookOutput> {
    await this.run(unitName(n), { name });
    await this.settle();
    return this.unit(n).last as HookOutput;
  }

  private unitByName(name: string): Member<M> {
    const found = this.units.get(name);
    if (!found) throw new Error(`no unit ${name}`);
    return found;
  }

  private enqueue(unit: string, kind: 'joined' | 'changed', remote?: string): void {
    this.queue.push({ unit, hook: { name: `${PEERS}-relation-${kind}`, relationKind: kind, ...(remote ? { remoteUnit: remote } : {}) } });
  }

  /** Runs queued hooks (each may queue more) until the units are quiet. */
  async settle(): Promise<void> {
    for (let n = 0; n < MAX_HOOKS; n++) {
      const next = this.queue.shift();
      if (!next) return;
      if (this.members.includes(next.unit)) await this.run(next.unit, next.hook);
    }
    throw new Error(`the units did not settle within ${MAX_HOOKS} hooks:\n${this.log.slice(-30).join('\n')}`);
  }

  /**
   * The relation as the unit sees it: members' bags; in its own departed hooks, only the peers
   * not yet departed from its view; none once it has left (broken: the bags as they were, no units).
   */
  private relationFor(unit: Member<M>, hook: PeerHook): RelationState | undefined {
    const name = unit.member.name;
    const leaving = !this.members.includes(name);
    if (leaving && !hook.relationKind) return undefined;
    let peers = this.members.filter((m) => m !== name);
    if (leaving && hook.relationKind === 'departed') peers = peers.slice(peers.indexOf(hook.remoteUnit as string) + 1);
    if (hook.relationKind === 'broken') peers = [];
    const peersData = Object.fromEntries(peers.map((m) => [m, { ...this.unitByName(m).bag }]));
    return peerRelation({ endpoint: PEERS, id: RELATION_ID, peersData, localUnitData: { ...unit.bag }, localAppData: { ...this.appBag } });
  }

  private async run(name: string, hook: PeerHook): Promise<void> {
    const unit = this.unitByName(name);
    const isLeader = this.leader === name;
    const out = await unit.member.run(hook, { relation: this.relationFor(unit, hook), leader: isLeader, appStatus: this.appStatus });
    unit.last = out;
    unit.logs.push(...out.logs);
    if (isLeader) this.appStatus = out.appStatus;
    const label = `${name}: ${hook.name}${hook.remoteUnit ? ` ${hook.remoteUnit}` : hook.relationKind === 'changed' ? ' (app)' : ''}`;
    this.log.push(label);
    if (out.relation && this.members.includes(name)) this.carry(unit, out.relation, isLeader);
    await this.assertNoDoubleRun(label);
  }

  /** What Juju does with a hook's relation-set: the others see it in a relation-changed. */
  private carry(unit: Member<M>, after: RelationState, isLeader: boolean): void {
    const others = this.members.filter((m) => m !== unit.member.name);
    if (JSON.stringify(after.localUnitData) !== JSON.stringify(unit.bag)) {
      unit.bag = { ...after.localUnitData };
      for (const other of others) this.enqueue(other, 'changed', unit.member.name);
    }
    if (isLeader && JSON.stringify(after.localAppData) !== JSON.stringify(this.appBag)) {
      this.appBag = { ...after.localAppData };
      for (const other of others) this.enqueue(other, 'changed');
    }
  }
}

/** The charm's event for a hook, through the harness's `on`. */
function harnessEvent(ctx: CharmHarness['ctx'], hook: PeerHook, rel: RelationState | undefined): EventSpec {
  const remote = { remoteUnit: hook.remoteUnit as string };
  if (hook.relationKind && !rel) throw new Error(`${hook.name} without the relation`);
  switch (hook.relationKind) {
    case 'created':
      return ctx.on.relationCreated(rel as RelationState);
    case 'joined':
      return ctx.on.relationJoined(rel as RelationState, remote);
    case 'changed':
      return ctx.on.relationChanged(rel as RelationState, hook.remoteUnit ? remote : {});
    case 'departed':
      return ctx.on.relationDeparted(rel as RelationState, { ...remote, ...(hook.departingUnit ? { departingUnit: hook.departingUnit } : {}) });
    case 'broken':
      return ctx.on.relationBroken(rel as RelationState);
    default:
      return { dispatchPath: `hooks/${hook.name}` };
  }
}

/** A unit in the harness: its own root and hostname (`host-<n>`), and an in-memory supervisord. */
export class HarnessMember implements PeerMember {
  readonly harness: CharmHarness;
  constructor(readonly name: string, n: number, private readonly config: Record<string, unknown>) {
    this.harness = charmHarness({ unitName: name });
    fs.mkdirSync(path.join(this.harness.root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(this.harness.root, 'etc', 'hostname'), `host-${n}\n`);
  }

  async run(hook: PeerHook, input: HookInput): Promise<HookOutput> {
    const relations = input.relation ? [input.relation] : [];
    const state = { config: this.config, leader: input.leader, relations, ...(input.appStatus ? { appStatus: input.appStatus as Output['appStatus'] } : {}) };
    const out = await this.harness.ctx.run(harnessEvent(this.harness.ctx, hook, input.relation), state);
    return { relation: out.relations.find((r) => r.endpoint === PEERS), appStatus: out.appStatus, unitStatus: out.unitStatus, logs: out.logs.map((l) => l.message) };
  }

  async running(): Promise<string[]> {
    return [...this.harness.supervisor.states].filter(([, state]) => state === 'RUNNING').map(([name]) => name).sort();
  }
}

/** Units in the harness. */
export class PeerUnits extends PeerNetwork<HarnessMember> {
  constructor(config: Record<string, unknown>) {
    super((name, n) => new HarnessMember(name, n, config));
  }
}
