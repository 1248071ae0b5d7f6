/**
 * relation-ids, relation-list, relation-get and relation-set, with the flags, defaults and
 * refusals of Juju's jujuc commands: `-r` defaults to the hook's relation, app bags are the
 * leader's to write (and, for its own app, to read, except in a peer relation, where every unit
 * reads its application's one bag), and only units in the relation are readable.
 */
import { parseRelationId } from '../ops/jujurules';
import { parseFlags } from './flags';
import type { EmulatedRelation, EmulatorState } from './state';
import { format, noExtra, OUTPUT_FLAGS, RunError, UsageError, yamlModule, type Tool } from './toolkit';

const RELATION_FLAG = { relation: 'value' } as const;
const ALIASES = { o: 'output', r: 'relation' };

function appOf(unitName: string): string {
  return unitName.split('/')[0] ?? '';
}

/** A peer relation joins the units of one application: the remote app is the unit's own. */
export function isPeerRelation(state: EmulatorState, relation: EmulatedRelation): boolean {
  return relation.remoteApp === appOf(state.unitName);
}

function fakeId(relation: EmulatedRelation): string {
  return `${relation.endpoint}:${relation.id}`;
}

/** `-r` as Juju reads it: given, it must name a known relation; absent, the hook's relation. */
function selectRelation(state: EmulatorState, given: string | boolean | undefined): EmulatedRelation {
  if (typeof given === 'string') {
    const id = parseRelationId(given);
    if (id === undefined) throw new UsageError(`invalid value "${given}" for flag -r: invalid relation id`);
    const relation = state.relations.find((r) => r.id === id);
    if (!relation) throw new UsageError(`invalid value "${given}" for flag -r: unknown relation id`);
    return relation;
  }
  const hookRelation = state.relations.find((r) => r.id === state.hookRelation?.id);
  if (!hookRelation) throw new UsageError('no relation id specified');
  return hookRelation;
}

/** Whose bag relation-get reads when the command line names none: the remote unit, else the remote app. */
function defaultTarget(state: EmulatorState, app: boolean): { target: string; app: boolean } {
  const hook = state.hookRelation;
  if (app) {
    if (hook?.remoteApp) return { target: hook.remoteApp, app };
  } else if (hook?.remoteUnit) return { target: hook.remoteUnit, app };
  else if (hook?.remoteApp) return { target: hook.remoteApp, app: true };
  throw new UsageError('no unit or application specified');
}

function readBag(state: EmulatorState, relation: EmulatedRelation, target: string, app: boolean): Record<string, string> {
  const localApp = appOf(state.unitName);
  if (app) {
    if (target === localApp) {
      // Peers share the application's bag: any unit reads it, only the leader writes it.
      if (!state.leader && !isPeerRelation(state, relation)) throw new RunError('permission denied');
      return relation.localAppData;
    }
    if (target === relation.remoteApp) return relation.remoteAppData;
    throw new RunError(`cannot read settings for application "${target}" in relation "${fakeId(relation)}": permission denied`);
  }
  if (target === state.unitName) return relation.localUnitData;
  const remote = relation.remoteUnitsData[target];
  if (!remote) throw new RunError(`cannot read settings for unit "${target}" in relation "${fakeId(relation)}": permission denied`);
  return remote;
}

/** The YAML (or JSON) map given with --file: scalar values only, kept as text; null removes the key. */
export function settingsFromFile(text: string): Record<string, string> {
  const doc: unknown = yamlModule().parse(text);
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new RunError('yaml: unmarshal errors: the settings file must hold a map');
  const settings: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (value !== null && typeof value === 'object') throw new RunError(`yaml: unmarshal errors: cannot unmarshal a map or list into the string value of "${key}"`);
    settings[key] = value === null ? '' : String(value);
  }
  return settings;
}

/** `key=value` arguments; an empty value is allowed (it removes the key), a repeated key is not. */
export function settingsFromArgs(args: string[]): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected "key=value", got "${arg}"`);
    const key = arg.slice(0, eq);
    if (key in settings) throw new UsageError(`key "${key}" specified more than once`);
    settings[key] = arg.slice(eq + 1);
  }
  return settings;
}

export const relationTools: Record<string, Tool> = {
  'relation-ids'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: OUTPUT_FLAGS, aliases: ALIASES });
    const hookEndpoint = state.relations.find((r) => r.id === state.hookRelation?.id)?.endpoint;
    const [endpoint = hookEndpoint, ...rest] = positionals;
    if (endpoint === undefined) throw new UsageError('no relation name specified');
    noExtra(rest);
    // Go's sort.Strings order, as Juju prints them.
    const ids = state.relations.filter((r) => r.endpoint === endpoint).map(fakeId).sort();
    return format(ids, flags.format);
  },
  'relation-list'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { ...OUTPUT_FLAGS, ...RELATION_FLAG, app: 'bool' }, aliases: ALIASES });
    const relation = selectRelation(state, flags.relation);
    noExtra(positionals);
    if (flags.app) return format(relation.remoteApp, flags.format);
    return format(Object.keys(relation.remoteUnitsData).sort(), flags.format);
  },
  'relation-get'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { ...OUTPUT_FLAGS, ...RELATION_FLAG, app: 'bool' }, aliases: ALIASES });
    const relation = selectRelation(state, flags.relation);
    const [rawKey, given, ...rest] = positionals;
    noExtra(rest);
    const key = rawKey === '-' ? undefined : rawKey;
    const app = flags.app === true;
    // With --app, a unit name stands for its application.
    const { target, app: readApp } = given === undefined ? defaultTarget(state, app) : { target: app ? appOf(given) : given, app };
    const bag = readBag(state, relation, target, readApp);
    return format(key === undefined ? { ...bag } : (bag[key] ?? null), flags.format);
  },
  'relation-set'(args, state, io) {
    const { flags, positionals } = parseFlags(args, { flags: { ...RELATION_FLAG, file: 'value', app: 'bool', format: 'value' }, aliases: ALIASES });
    const relation = selectRelation(state, flags.relation);
    const overrides = settingsFromArgs(positionals);
    const fromFile = typeof flags.file === 'string' ? settingsFromFile(io.readInput(flags.file)) : {};
    if (flags.app && !state.leader) throw new RunError('cannot write relation settings');
    const bag = flags.app ? relation.localAppData : relation.localUnitData;
    for (const [key, value] of Object.entries({ ...fromFile, ...overrides })) {
      if (value === '') delete bag[key];
      else bag[key] = value;
    }
    return '';
  },
};
