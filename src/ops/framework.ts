import type { z } from 'zod';
import { flattenActionResults, type ActionResults } from './actionresults';
import type { Backend } from './backend';
import { parseDispatchPath, type JujuContext } from './context';
import { TooManyRelatedAppsError } from './errors';
import type { LogLevel } from './hookcmds';
import { parseRelationHookName, type RelationHookKind } from './jujurules';
import { Relation, type RelationEvent } from './relations';
import { highestPriority, type StatusBase } from './status';

export const HOOK_NAMES = [
  'install',
  'start',
  'stop',
  'remove',
  'config-changed',
  'upgrade-charm',
  'update-status',
  'leader-elected',
  'secret-changed',
] as const;
export type HookName = (typeof HOOK_NAMES)[number];

/** The secret a secret hook is about, as Juju names it (JUJU_SECRET_ID, _LABEL, _REVISION). */
export interface SecretInfo {
  readonly id: string;
  /** This unit's label for it, if it gave one. */
  readonly label: string | undefined;
  readonly revision: number | undefined;
}

export interface HookEvent {
  readonly kind: 'hook';
  readonly name: HookName;
  /** In secret-changed: the secret that has a new revision (always there: Juju names it). */
  readonly secret?: SecretInfo;
}

/** Hooks about one secret: Juju gives them JUJU_SECRET_ID. */
const SECRET_HOOKS: ReadonlySet<HookName> = new Set(['secret-changed']);

/**
 * Gathers the unit status from components at the end of every event, as ops' collect-status:
 * each handler adds the statuses its part calls for, and the framework sets the most urgent one
 * (highestPriority) once, so an early Blocked cannot be hidden by a later Active line.
 */
export class CollectStatusEvent {
  readonly kind = 'collect-status';
  private readonly added: StatusBase[] = [];
  addStatus(status: StatusBase): void {
    this.added.push(status);
  }
  /** @internal */
  get statuses(): readonly StatusBase[] {
    return this.added;
  }
}

/** What a charm reads about its unit and application; each tool is asked at most once per event. */
export class Model {
  private config?: Promise<Readonly<Record<string, unknown>>>;
  private leader?: Promise<boolean>;
  private readonly relationsByEndpoint = new Map<string, Promise<Relation[]>>();
  constructor(private readonly backend: Backend, readonly context: JujuContext) {}

  /** The relations on an endpoint (relation-ids, then relation-list for each). */
  relations(endpoint: string): Promise<Relation[]> {
    let found = this.relationsByEndpoint.get(endpoint);
    if (!found) {
      found = this.backend.relationIds(endpoint).then((ids) => Promise.all(ids.map((id) => this.loadRelation(endpoint, id))));
      this.relationsByEndpoint.set(endpoint, found);
    }
    return found;
  }

  /**
   * The relation with this id, or the endpoint's only relation. Undefined when there is none;
   * several without an id throw TooManyRelatedAppsError. The hook's own relation is found even
   * while it is being broken and no longer listed.
   */
  async getRelation(endpoint: string, id?: number): Promise<Relation | undefined> {
    const listed = await this.relations(endpoint);
    if (id === undefined) {
      if (listed.length > 1) throw new TooManyRelatedAppsError(endpoint, listed.length);
      return listed[0];
    }
    const match = listed.find((r) => r.id === id);
    if (match) return match;
    const isHookRelation = this.context.relationName === endpoint && this.context.relationId === id;
    return isHookRelation ? this.loadRelation(endpoint, id) : undefined;
  }

  private async loadRelation(endpoint: string, id: number): Promise<Relation> {
    const [units, app] = await Promise.all([this.backend.relationList(id), this.backend.relationRemoteApp(id)]);
    const local = { unitName: this.context.unitName, appName: this.context.appName };
    return new Relation({ id, name: endpoint, app: app ?? this.hookRemoteApp(id), units }, local, this.backend, () => this.isLeader());
  }

  private hookRemoteApp(id: number): string | undefined {
    return this.context.relationId === id ? this.context.remoteApp : undefined;
  }

  getConfig(): Promise<Readonly<Record<string, unknown>>> {
    this.config ??= this.backend.configGet().then((c) => Object.freeze({ ...c }));
    return this.config;
  }
  isLeader(): Promise<boolean> {
    this.leader ??= this.backend.isLeader();
    return this.leader;
  }
  /** Sets the unit status at once (e.g. maintenance during a long install). */
  setUnitStatus(status: StatusBase): Promise<void> {
    return this.backend.statusSet(status.name, status.message);
  }
  setAppStatus(status: StatusBase): Promise<void> {
    return this.backend.statusSet(status.name, status.message, { application: true });
  }
  setWorkloadVersion(version: string): Promise<void> {
    return this.backend.applicationVersionSet(version);
  }
  /** `refresh` moves this unit to the secret's latest revision (on secret-changed). */
  getSecret(ref: { id?: string; label?: string }, options: { refresh?: boolean } = {}): Promise<Record<string, string>> {
    return this.backend.secretGet(ref, options);
  }
}

/**
 * The charm's own key-value state, kept by the controller from one event to the next (state-get,
 * state-set, state-delete; Juju 2.8 on), where ops keeps StoredState when told to use Juju for
 * storage. Read at most once per event; Juju commits the writes only if the hook succeeds.
 */
export class StoredState {
  private values?: Promise<Record<string, string>>;
  constructor(private readonly backend: Backend) {}
  async all(): Promise<Readonly<Record<string, string>>> {
    this.values ??= this.backend.stateGet();
    return { ...(await this.values) };
  }
  async get(key: string): Promise<string | undefined> {
    return (await this.all())[key];
  }
  async set(values: Readonly<Record<string, string>>): Promise<void> {
    await this.backend.stateSet(values);
    if (this.values) Object.assign(await this.values, values);
  }
  async delete(key: string): Promise<void> {
    await this.backend.stateDelete(key);
    if (this.values) delete (await this.values)[key];
  }
}

/** Logging to Juju's debug-log; never to stdout, which Juju folds into action results. */
export class JujuLogger {
  constructor(private readonly backend: Backend) {}
  debug(message: string) {
    return this.write('DEBUG', message);
  }
  info(message: string) {
    return this.write('INFO', message);
  }
  warning(message: string) {
    return this.write('WARNING', message);
  }
  error(message: string) {
    return this.write('ERROR', message);
  }
  private async write(level: LogLevel, message: string): Promise<void> {
    try {
      await this.backend.jujuLog(level, message);
    } catch {
      process.stderr.write(`${level} ${message}\n`);
    }
  }
}

export class Framework {
  readonly model: Model;
  readonly log: JujuLogger;
  readonly stored: StoredState;
  constructor(readonly context: JujuContext, readonly backend: Backend) {
    this.model = new Model(backend, context);
    this.log = new JujuLogger(backend);
    this.stored = new StoredState(backend);
  }
}

export class ActionEvent<Params> {
  readonly kind = 'action';
  private failedWith: string | undefined;
  constructor(
    readonly name: string,
    readonly id: string | undefined,
    readonly params: Params,
    private readonly backend: Backend,
  ) {}
  /** Nested results are flattened to dotted keys; a key Juju would refuse throws here. */
  async setResults(results: ActionResults): Promise<void> {
    await this.backend.actionSet(flattenActionResults(results));
  }
  async fail(message: string): Promise<void> {
    this.failedWith = message;
    await this.backend.actionFail(message);
  }
  async log(message: string): Promise<void> {
    await this.backend.actionLog(message);
  }
  get failed(): boolean {
    return this.failedWith !== undefined;
  }
}

type HookHandler = (event: HookEvent) => Promise<void> | void;
type RelationHandler = (event: RelationEvent) => Promise<void> | void;
type ActionHandler = (event: ActionEvent<unknown>) => Promise<void> | void;
type CollectStatusHandler = (event: CollectStatusEvent) => Promise<void> | void;

export abstract class CharmBase {
  private readonly hookHandlers = new Map<HookName, HookHandler[]>();
  private readonly relationHandlers = new Map<string, RelationHandler[]>();
  private readonly actionHandlers = new Map<string, { schema: z.ZodTypeAny; handler: ActionHandler }>();
  private readonly collectStatusHandlers: CollectStatusHandler[] = [];

  constructor(readonly framework: Framework) {}

  get model(): Model {
    return this.framework.model;
  }
  get log(): JujuLogger {
    return this.framework.log;
  }

  protected observe(hook: HookName, handler: HookHandler): void {
    this.hookHandlers.set(hook, [...(this.hookHandlers.get(hook) ?? []), handler]);
  }

  /** `observeRelation('cos-agent', 'joined', ...)` handles cos-agent-relation-joined. */
  protected observeRelation(endpoint: string, kind: RelationHookKind, handler: RelationHandler): void {
    const hook = `${endpoint}-relation-${kind}`;
    this.relationHandlers.set(hook, [...(this.relationHandlers.get(hook) ?? []), handler]);
  }

  /** Params are checked against the schema before the handler runs; a mismatch fails the action. */
  protected observeAction<S extends z.ZodTypeAny>(
    name: string,
    schema: S,
    handler: (event: ActionEvent<z.output<S>>) => Promise<void> | void,
  ): void {
    this.actionHandlers.set(name, { schema, handler: handler as ActionHandler });
  }

  /**
   * A component of the unit status: the handler runs at the end of every event that ended well
   * and adds the statuses its part calls for (CollectStatusEvent). When no handler adds one, the
   * status is left as it was.
   */
  protected observeCollectUnitStatus(handler: CollectStatusHandler): void {
    this.collectStatusHandlers.push(handler);
  }

  /** @internal The most urgent status the components added, or undefined. */
  async collectUnitStatus(): Promise<StatusBase | undefined> {
    const event = new CollectStatusEvent();
    for (const handler of this.collectStatusHandlers) await handler(event);
    return highestPriority(event.statuses);
  }

  /** @internal */
  async dispatchHook(name: string): Promise<void> {
    const relationHook = parseRelationHookName(name);
    if (relationHook) {
      await this.dispatchRelationHook(name, relationHook.endpoint, relationHook.kind);
      return;
    }
    if (!(HOOK_NAMES as readonly string[]).includes(name)) {
      await this.log.debug(`no handler for hook ${name}`);
      return;
    }
    const hook = name as HookName;
    const secret = SECRET_HOOKS.has(hook) ? this.hookSecret(name) : undefined;
    for (const handler of this.hookHandlers.get(hook) ?? []) {
      await handler({ kind: 'hook', name: hook, ...(secret ? { secret } : {}) });
    }
  }

  private hookSecret(name: string): SecretInfo {
    const { secretId, secretLabel, secretRevision } = this.framework.context;
    if (!secretId) throw new Error(`${name}: Juju gave no JUJU_SECRET_ID`);
    return { id: secretId, label: secretLabel, revision: secretRevision };
  }

  private async dispatchRelationHook(name: string, endpoint: string, kind: RelationHookKind): Promise<void> {
    const handlers = this.relationHandlers.get(name) ?? [];
    if (handlers.length === 0) {
      await this.log.debug(`no handler for hook ${name}`);
      return;
    }
    const context = this.framework.context;
    if (context.relationId === undefined) throw new Error(`${name}: Juju gave no JUJU_RELATION_ID`);
    const relation = await this.model.getRelation(endpoint, context.relationId);
    if (!relation) throw new Error(`${name}: relation ${context.relationId} is not on endpoint ${endpoint}`);
    const event: RelationEvent = {
      kind: 'relation',
      name,
      endpoint,
      relationKind: kind,
      relation,
      app: context.remoteApp,
      unit: context.remoteUnit,
      departingUnit: context.departingUnit,
    };
    for (const handler of handlers) await handler(event);
  }

  /** @internal */
  async dispatchAction(name: string, id: string | undefined): Promise<void> {
    const entry = this.actionHandlers.get(name);
    const backend = this.framework.backend;
    if (!entry) {
      await backend.actionFail(`action ${name} is not implemented by this charm`);
      return;
    }
    const parsed = entry.schema.safeParse(await backend.actionGet());
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`);
      await backend.actionFail(`invalid parameters for ${name}: ${problems.join('; ')}`);
      return;
    }
    await entry.handler(new ActionEvent(name, id, parsed.data, backend));
  }
}

export type CharmFactory = (framework: Framework) => CharmBase;

/**
 * Runs the one event Juju asked for and returns the process exit code. Hook errors are logged
 * and give exit 1 (Juju shows "hook failed"); action errors become action-fail with exit 0,
 * since a non-zero exit would replace the message with "exit status 1".
 */
export async function runEvent(factory: CharmFactory, context: JujuContext, backend: Backend): Promise<number> {
  const framework = new Framework(context, backend);
  const target = parseDispatchPath(context.dispatchPath);
  let charm: CharmBase | undefined;
  try {
    charm = factory(framework);
    if (target.kind === 'hook') await charm.dispatchHook(target.name);
    else await charm.dispatchAction(target.name, context.actionId);
  } catch (error) {
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    await framework.log.error(`${context.dispatchPath}: ${text}`);
    if (target.kind === 'hook') return 1;
    await backend.actionFail(error instanceof Error ? error.message : String(error));
  }
  if (charm) await setCollectedStatus(charm);
  return 0;
}

async function setCollectedStatus(charm: CharmBase): Promise<void> {
  try {
    const status = await charm.collectUnitStatus();
    if (status) await charm.model.setUnitStatus(status);
  } catch (error) {
    await charm.log.error(`collecting status failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
