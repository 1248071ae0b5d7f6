/**
 * State in, state out: run one event against a fake Juju and read what the charm did, in the
 * manner of ops.testing's Context and State.
 *
 *   const ctx = new Context((fw) => new MyCharm(fw), { charmDir });
 *   const out = await ctx.run(ctx.on.configChanged(), { config: { 'config-dir': 'lab1' } });
 *   expect(out.unitStatus.name).toBe('active');
 *   const next = await ctx.run(ctx.on.updateStatus(), out); // the state out is the next state in
 *
 * The fake Juju is the emulated hook tools of src/hooktools, run in-process: every call the
 * charm makes goes through the same argv parsing and refusals as on a real unit. Before the event
 * runs, the state and event are checked against the charm's config.yaml, actions.yaml and
 * metadata.yaml (see consistency.ts).
 */
import * as fs from 'node:fs';
import { charmNameOf, charmSpecFrom, configDefaults, defaultUnitName, endpointsOf, type CharmSpec } from '../hooktools/charmspec';
import { parseJujuRunArgs } from '../hooktools/jujurun';
import { emptyState, type EmulatedRelation, type EmulatorState, type HookRelation } from '../hooktools/state';
import { runTool } from '../hooktools/tools';
import { HookToolBackend } from './backend';
import { checkConsistency } from './consistency';
import type { JujuContext } from './context';
import { HookToolError, UncaughtCharmError } from './errors';
import { runEvent, type CharmFactory, type HookName } from './framework';
import type { LogLevel, ToolRunner } from './hookcmds';
import { statusFromName, type StatusBase } from './status';

export { configDefaultsFrom } from '../hooktools/charmspec';
export { JujuRunError, parseJujuRunArgs } from '../hooktools/jujurun';
export { InconsistentScenarioError } from './consistency';

/** One relation as the unit sees it. Build it with `relation()`, which gives it an id. */
export interface RelationState {
  readonly id: number;
  readonly endpoint: string;
  remoteApp: string;
  localUnitData: Record<string, string>;
  localAppData: Record<string, string>;
  remoteAppData: Record<string, string>;
  /** The remote units in the relation, by name (`grafana-agent/0`), each with its bag. */
  remoteUnitsData: Record<string, Record<string, string>>;
}

let lastRelationId = 0;

/** A relation with a fresh id; the remote side defaults to one unit, `remote/0`, with empty bags. */
export function relation(spec: { endpoint: string; id?: number } & Partial<Omit<RelationState, 'id' | 'endpoint'>>): RelationState {
  const id = spec.id ?? ++lastRelationId;
  lastRelationId = Math.max(lastRelationId, id);
  const remoteApp = spec.remoteApp ?? 'remote';
  return {
    localUnitData: {},
    localAppData: {},
    remoteAppData: {},
    remoteUnitsData: { [`${remoteApp}/0`]: {} },
    ...spec,
    id,
    remoteApp,
  };
}

/**
 * A peer relation (metadata.yaml's `peers`): the other units of this application, each with its
 * bag, and the application's one bag, which every unit reads and only the leader writes. The
 * remote application is filled in when the event runs: it is the unit's own.
 */
export function peerRelation(spec: { endpoint: string; id?: number; peersData?: Record<string, Record<string, string>>; localUnitData?: Record<string, string>; localAppData?: Record<string, string> }): RelationState {
  return relation({ endpoint: spec.endpoint, id: spec.id, remoteApp: '', remoteUnitsData: spec.peersData ?? {}, localUnitData: spec.localUnitData ?? {}, localAppData: spec.localAppData ?? {} });
}

/** Peer relations name the unit's own application as the remote one. */
function withPeerApps(relations: readonly RelationState[], spec: CharmSpec, unitName: string): EmulatedRelation[] {
  const app = unitName.split('/')[0] ?? '';
  return relations.map((r) => (spec.endpoints[r.endpoint]?.role === 'peers' ? { ...structuredClone(r), remoteApp: app, remoteAppData: {} } : structuredClone(r)));
}

/** What Juju holds for the unit before an event; a run's Output is one too, for the next event. */
export interface State {
  config?: Record<string, unknown>;
  leader?: boolean;
  unitStatus?: StatusBase;
  appStatus?: StatusBase;
  workloadVersion?: string;
  /** Secret content by id and by label. */
  secrets?: Record<string, Record<string, string>>;
  relations?: RelationState[];
  /** The charm's stored state on the controller (Framework.stored: state-get and state-set). */
  storedState?: Record<string, string>;
}

/** The state after the event (pass it to the next `run` as its state) and what the event did. */
export interface Output extends State {
  config: Record<string, unknown>;
  leader: boolean;
  unitStatus: StatusBase | undefined;
  appStatus: StatusBase | undefined;
  workloadVersion: string | undefined;
  secrets: Record<string, Record<string, string>>;
  /** The relations after the event, with the bags as the charm left them. */
  relations: RelationState[];
  storedState: Record<string, string>;
  /** Every status-set of this event in order, unit ones only. */
  unitStatusHistory: StatusBase[];
  logs: { level: LogLevel; message: string }[];
  actionResults: Record<string, string>;
  actionLogs: string[];
  /** The action-fail message, if the action failed. */
  actionFailure: string | undefined;
  exitCode: number;
  /** Every hook tool call of this event, as argv, refused ones included. */
  toolCalls: string[][];
}

/** The secret a secret hook is about: its URI (a key of State.secrets), label and revision. */
export interface SecretSpec {
  id: string;
  label?: string;
  revision?: number;
}

export interface EventSpec {
  dispatchPath: string;
  actionParams?: Record<string, unknown>;
  relation?: HookRelation;
  secret?: SecretSpec;
}

const hook = (name: HookName): EventSpec => ({ dispatchPath: `hooks/${name}` });

const relationHook = (kind: string, rel: RelationState, remote: Omit<HookRelation, 'id'> = {}): EventSpec => ({
  dispatchPath: `hooks/${rel.endpoint}-relation-${kind}`,
  relation: { id: rel.id, remoteApp: rel.remoteApp, ...remote },
});

export const on = {
  install: () => hook('install'),
  start: () => hook('start'),
  stop: () => hook('stop'),
  remove: () => hook('remove'),
  configChanged: () => hook('config-changed'),
  upgradeCharm: () => hook('upgrade-charm'),
  updateStatus: () => hook('update-status'),
  leaderElected: () => hook('leader-elected'),
  secretChanged: (secret: SecretSpec): EventSpec => ({ ...hook('secret-changed'), secret }),
  relationCreated: (rel: RelationState) => relationHook('created', rel),
  relationJoined: (rel: RelationState, remote: { remoteUnit: string }) => relationHook('joined', rel, remote),
  /** Without a remote unit: the remote application's bag changed (for peers, the leader's). */
  relationChanged: (rel: RelationState, remote: { remoteUnit?: string } = {}) => relationHook('changed', rel, remote),
  relationDeparted: (rel: RelationState, remote: { remoteUnit: string; departingUnit?: string }) =>
    relationHook('departed', rel, { departingUnit: remote.remoteUnit, ...remote }),
  relationBroken: (rel: RelationState) => relationHook('broken', rel),
  action: (name: string, params: Record<string, unknown> = {}): EventSpec => ({
    dispatchPath: `actions/${name}`,
    actionParams: params,
  }),
  /**
   * The action a `juju run` command line asks for (the words after `juju run`), with its values
   * read as Juju reads them; throws JujuRunError where Juju's client would refuse the command.
   */
  jujuRun: (argv: readonly string[]): EventSpec => {
    const { action, params } = parseJujuRunArgs(argv);
    return on.action(action, params);
  },
};

/** Runs the emulated tools in this process; a refusal throws as a failed tool program would. */
function inProcessRunner(state: EmulatorState): ToolRunner {
  return async (tool, args, stdin) => {
    const io = { readInput: (p: string) => (p === '-' ? (stdin ?? '') : fs.readFileSync(p, 'utf8')) };
    const answer = runTool(tool, [...args], state, io);
    if (answer.exitCode !== 0) throw new HookToolError(tool, args, answer.exitCode, answer.stderr);
    return answer.stdout;
  };
}

const asEmulated = (status: StatusBase | undefined) => (status ? { status: status.name, message: status.message } : null);
const asStatus = (status: { status: string; message: string } | null) => (status ? statusFromName(status.status, status.message) : undefined);

function peerEndpoint(spec: CharmSpec, state: State, id: number): boolean {
  const endpoint = state.relations?.find((r) => r.id === id)?.endpoint;
  return endpoint !== undefined && spec.endpoints[endpoint]?.role === 'peers';
}

function emulatorStateFor(state: State, spec: CharmSpec, unitName: string, event: EventSpec): EmulatorState {
  const isAction = event.dispatchPath.startsWith('actions/');
  return {
    ...emptyState(),
    unitName,
    config: structuredClone(state.config ?? {}),
    configDefaults: configDefaults(spec),
    leader: state.leader ?? false,
    action: isAction ? { name: event.dispatchPath.slice('actions/'.length), params: structuredClone(event.actionParams ?? {}) } : null,
    unitStatus: asEmulated(state.unitStatus),
    appStatus: asEmulated(state.appStatus),
    workloadVersion: state.workloadVersion ?? null,
    secrets: structuredClone(state.secrets ?? {}),
    charmState: structuredClone(state.storedState ?? {}),
    relations: withPeerApps(state.relations ?? [], spec, unitName),
    hookRelation: event.relation && peerEndpoint(spec, state, event.relation.id) ? { ...event.relation, remoteApp: unitName.split('/')[0] ?? '' } : (event.relation ?? null),
  };
}

/** action-set keeps results nested; tests read them as the dotted keys the charm set. */
function flatten(results: Record<string, unknown>, prefix = ''): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [key, value] of Object.entries(results)) {
    const full = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'object' && value !== null) Object.assign(flat, flatten(value as Record<string, unknown>, full));
    else flat[full] = String(value);
  }
  return flat;
}

function outputFrom(emulated: EmulatorState, exitCode: number): Output {
  return {
    config: emulated.config,
    leader: emulated.leader,
    secrets: emulated.secrets,
    storedState: emulated.charmState,
    unitStatus: asStatus(emulated.unitStatus),
    appStatus: asStatus(emulated.appStatus),
    unitStatusHistory: emulated.unitStatusHistory.map((s) => statusFromName(s.status, s.message)),
    workloadVersion: emulated.workloadVersion ?? undefined,
    logs: emulated.logs.map((l) => ({ level: l.level as LogLevel, message: l.message })),
    actionResults: flatten(emulated.actionResults),
    actionLogs: emulated.actionLogs,
    actionFailure: emulated.actionFailed ? emulated.actionMessage : undefined,
    exitCode,
    relations: emulated.relations,
    toolCalls: emulated.calls,
  };
}

/** The charm's declarations given inline, as documents of metadata.yaml, config.yaml, actions.yaml. */
export interface InlineCharmSpec {
  metadata?: unknown;
  config?: { options?: CharmSpec['config'] };
  actions?: CharmSpec['actions'];
}

export class Context {
  readonly on = on;
  private readonly spec: CharmSpec;
  private readonly unitName: string;
  /**
   * @param options.unitName the unit the charm runs as; by default unit 0 of the application
   *   metadata.yaml names (inline or in charmDir).
   * @param options.spec declarations given inline instead of read from charmDir (each document
   *   given replaces its file); a file that is absent declares nothing.
   */
  constructor(
    private readonly factory: CharmFactory,
    private readonly options: { charmDir: string; unitName?: string; spec?: InlineCharmSpec },
  ) {
    const fromDir = charmSpecFrom(options.charmDir);
    const inline = options.spec ?? {};
    this.spec = {
      name: inline.metadata ? charmNameOf(inline.metadata) : fromDir.name,
      config: inline.config ? (inline.config.options ?? {}) : fromDir.config,
      actions: inline.actions ?? fromDir.actions,
      endpoints: inline.metadata ? endpointsOf(inline.metadata) : fromDir.endpoints,
    };
    this.unitName = options.unitName ?? defaultUnitName(this.spec, 'Context');
  }

  /**
   * Runs one event. An inconsistent state or event rejects with InconsistentScenarioError before
   * the charm runs; an uncaught error in a hook rejects with UncaughtCharmError.
   */
  async run(event: EventSpec, state: State = {}): Promise<Output> {
    checkConsistency(this.spec, { ...event, config: state.config, relations: state.relations, secrets: state.secrets });
    const unitName = this.unitName;
    const emulated = emulatorStateFor(state, this.spec, unitName, event);
    const exitCode = await runEvent(this.factory, this.jujuContext(event, unitName, emulated), new HookToolBackend(inProcessRunner(emulated)));
    const out = outputFrom(emulated, exitCode);
    if (!event.dispatchPath.startsWith('actions/') && exitCode !== 0) {
      const err = out.logs.find((l) => l.level === 'ERROR');
      throw new UncaughtCharmError(event.dispatchPath, new Error(err?.message ?? 'non-zero exit'));
    }
    return out;
  }

  private jujuContext(event: EventSpec, unitName: string, emulated: EmulatorState): JujuContext {
    const isAction = event.dispatchPath.startsWith('actions/');
    const hookRelation = emulated.relations.find((r) => r.id === event.relation?.id);
    const remoteApp = emulated.hookRelation?.remoteApp;
    return Object.freeze({
      dispatchPath: event.dispatchPath,
      unitName,
      appName: unitName.split('/')[0] ?? '',
      charmDir: this.options.charmDir,
      modelName: 'test-model',
      modelUuid: '00000000-0000-4000-8000-000000000001',
      jujuVersion: '3.6.0',
      actionName: isAction ? event.dispatchPath.slice('actions/'.length) : undefined,
      actionId: isAction ? '1' : undefined,
      relationName: hookRelation?.endpoint,
      relationId: hookRelation?.id,
      remoteUnit: event.relation?.remoteUnit,
      remoteApp,
      departingUnit: event.relation?.departingUnit,
      secretId: event.secret?.id,
      secretLabel: event.secret?.label,
      secretRevision: event.secret?.revision,
    });
  }
}
