/**
 * Relations as a charm sees them, in the shape of Python ops: a Relation has the remote `app` and
 * `units`, and four kinds of data bag. The framework refuses what Juju would refuse before any
 * tool runs: writing a remote bag, and touching this app's bag when not the leader (in a peer
 * relation every unit reads its application's bag; only the leader writes it).
 */
import type { Backend } from './backend';
import { RelationDataAccessError } from './errors';
import type { RelationHookKind } from './jujurules';

type Access = 'read-write' | 'read-only' | 'leader-only' | 'leader-writes';

/** One data bag; reads are cached for the event and kept current by this unit's own writes. */
export class RelationDataBag {
  private cache?: Promise<Record<string, string>>;
  constructor(
    private readonly backend: Backend,
    private readonly relation: { id: number; name: string },
    /** The unit or application whose bag this is. */
    readonly owner: string,
    private readonly isApp: boolean,
    private readonly access: Access,
    private readonly isLeader: () => Promise<boolean>,
  ) {}

  async get(): Promise<Readonly<Record<string, string>>> {
    if (this.access === 'leader-only') await this.requireLeaderFor('read');
    this.cache ??= this.backend.relationGet(this.relation.id, this.owner, { app: this.isApp });
    return { ...(await this.cache) };
  }

  /** Sets the given keys; an empty string removes a key, as relation-set does. */
  async update(values: Readonly<Record<string, string>>): Promise<void> {
    if (this.access === 'read-only') throw new RelationDataAccessError(`${this.describe()} belongs to the remote side and is read-only`);
    if (this.access !== 'read-write') await this.requireLeaderFor('write');
    await this.backend.relationSet(this.relation.id, values, { app: this.isApp });
    if (this.cache) {
      const current = await this.cache;
      for (const [key, value] of Object.entries(values)) {
        if (value === '') delete current[key];
        else current[key] = value;
      }
    }
  }

  private async requireLeaderFor(verb: 'read' | 'write'): Promise<void> {
    if (!(await this.isLeader())) {
      throw new RelationDataAccessError(`${this.describe()}: only the leader may ${verb} its application's data`);
    }
  }

  private describe(): string {
    return `${this.isApp ? 'application' : 'unit'} data of ${this.owner} in relation ${this.relation.name}:${this.relation.id}`;
  }
}

export interface RelationIdentity {
  id: number;
  /** The endpoint, as named in metadata.yaml. */
  name: string;
  /** The remote application; unknown only when every remote unit has gone. */
  app: string | undefined;
  /** The remote units in the relation. */
  units: readonly string[];
}

export class Relation implements RelationIdentity {
  readonly id: number;
  /** A peer relation: the other units are this application's own, and its app bag is shared. */
  readonly isPeer: boolean;
  readonly name: string;
  readonly app: string | undefined;
  readonly units: readonly string[];
  readonly data: {
    readonly localUnit: RelationDataBag;
    readonly localApp: RelationDataBag;
    readonly remoteApp: RelationDataBag | undefined;
    /** A remote unit's bag; a unit not in the relation is refused. */
    remoteUnit(unitName: string): RelationDataBag;
  };

  constructor(identity: RelationIdentity, local: { unitName: string; appName: string }, backend: Backend, isLeader: () => Promise<boolean>) {
    ({ id: this.id, name: this.name, app: this.app, units: this.units } = identity);
    this.isPeer = identity.app === local.appName;
    const bag = (owner: string, isApp: boolean, access: Access) => new RelationDataBag(backend, identity, owner, isApp, access, isLeader);
    const remoteUnits = new Map(identity.units.map((unit) => [unit, bag(unit, false, 'read-only')]));
    const localApp = bag(local.appName, true, this.isPeer ? 'leader-writes' : 'leader-only');
    this.data = {
      localUnit: bag(local.unitName, false, 'read-write'),
      localApp,
      // Peers: the remote application is this one, and its bag the same one.
      remoteApp: this.isPeer ? localApp : identity.app === undefined ? undefined : bag(identity.app, true, 'read-only'),
      remoteUnit(unitName) {
        const found = remoteUnits.get(unitName);
        if (!found) throw new RelationDataAccessError(`unit ${unitName} is not in relation ${identity.name}:${identity.id}`);
        return found;
      },
    };
  }
}

/** `<endpoint>-relation-<kind>`: the relation, and the remote side Juju names for it. */
export interface RelationEvent {
  readonly kind: 'relation';
  readonly name: string;
  readonly endpoint: string;
  readonly relationKind: RelationHookKind;
  readonly relation: Relation;
  /** The remote application. */
  readonly app: string | undefined;
  /** The remote unit the event is about (joined, changed, departed). */
  readonly unit: string | undefined;
  /** In departed: the unit leaving the relation. */
  readonly departingUnit: string | undefined;
}
