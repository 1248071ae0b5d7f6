/**
 * The harness's consistency check, in the manner of Scenario's: before an event runs, the state
 * and event must be ones Juju could produce for this charm. A misspelled config key, an action
 * or endpoint the charm does not declare, or a remote unit not in the relation fails the test.
 */
import type { CharmSpec, ConfigOption } from '../hooktools/charmspec';
import { HOOK_NAMES } from './framework';
import { parseRelationHookName } from './jujurules';

export class InconsistentScenarioError extends Error {
  override readonly name = 'InconsistentScenarioError';
  constructor(readonly problems: readonly string[]) {
    super(`inconsistent scenario:\n  ${problems.join('\n  ')}`);
  }
}

export interface RelationInput {
  id: number;
  endpoint: string;
  remoteUnitsData?: Record<string, unknown>;
}

export interface ScenarioInput {
  dispatchPath: string;
  actionParams?: Record<string, unknown>;
  relation?: { id: number; remoteUnit?: string; departingUnit?: string };
  secret?: { id: string };
  config?: Record<string, unknown>;
  relations?: readonly RelationInput[];
  secrets?: Readonly<Record<string, unknown>>;
}

const CONFIG_TYPE_CHECKS: Record<ConfigOption['type'], (value: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  int: (v) => Number.isInteger(v),
  float: (v) => typeof v === 'number' && Number.isFinite(v),
  boolean: (v) => typeof v === 'boolean',
  secret: (v) => typeof v === 'string' && v.startsWith('secret:'),
};

/** JSON-schema types as actions.yaml names them. */
const PARAM_TYPE_CHECKS: Record<string, (value: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === 'number',
  boolean: (v) => typeof v === 'boolean',
  array: (v) => Array.isArray(v),
  object: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
};

export function checkConfig(spec: CharmSpec, config: Record<string, unknown> = {}): string[] {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    const option = spec.config[key];
    if (!option) problems.push(`config option "${key}" is not in config.yaml`);
    else if (value !== null && value !== undefined && !CONFIG_TYPE_CHECKS[option.type]?.(value)) {
      problems.push(`config option "${key}" is a ${option.type} in config.yaml, got ${JSON.stringify(value)}`);
    }
  }
  return problems;
}

export function checkAction(spec: CharmSpec, name: string, params: Record<string, unknown> = {}): string[] {
  const action = spec.actions[name];
  if (!action) return [`action "${name}" is not in actions.yaml`];
  const declared = action.params ?? {};
  const problems: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    const param = declared[key];
    if (!param) {
      if (action.additionalProperties === false) problems.push(`action "${name}" has no param "${key}" in actions.yaml`);
    } else if (param.type && PARAM_TYPE_CHECKS[param.type] && !PARAM_TYPE_CHECKS[param.type]?.(value)) {
      problems.push(`action "${name}" param "${key}" is a ${param.type} in actions.yaml, got ${JSON.stringify(value)}`);
    }
  }
  for (const key of action.required ?? []) if (!(key in params)) problems.push(`action "${name}" needs param "${key}"`);
  return problems;
}

export function checkRelations(spec: CharmSpec, relations: readonly RelationInput[] = []): string[] {
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const relation of relations) {
    if (!spec.endpoints[relation.endpoint]) problems.push(`relation endpoint "${relation.endpoint}" is not in metadata.yaml`);
    if (seen.has(relation.id)) problems.push(`relation id ${relation.id} is used twice`);
    seen.add(relation.id);
  }
  return problems;
}

/** A relation hook needs its relation in the state, and the remote unit Juju would name. */
function checkRelationEvent(spec: CharmSpec, input: ScenarioInput, endpoint: string, kind: string): string[] {
  if (!spec.endpoints[endpoint]) return [`event ${endpoint}-relation-${kind}: endpoint "${endpoint}" is not in metadata.yaml`];
  const hook = input.relation;
  if (!hook) return [`event ${endpoint}-relation-${kind} names no relation`];
  const relation = input.relations?.find((r) => r.id === hook.id);
  if (!relation) return [`event ${endpoint}-relation-${kind}: relation ${hook.id} is not in the state`];
  if (relation.endpoint !== endpoint) return [`event ${endpoint}-relation-${kind}: relation ${hook.id} is on endpoint "${relation.endpoint}"`];
  const units = Object.keys(relation.remoteUnitsData ?? {});
  const problems: string[] = [];
  // changed without a remote unit: the remote application's bag changed.
  if (['joined', 'departed'].includes(kind) && !hook.remoteUnit) problems.push(`event ${endpoint}-relation-${kind} needs a remote unit`);
  if ((kind === 'joined' || kind === 'changed') && hook.remoteUnit && !units.includes(hook.remoteUnit)) {
    problems.push(`event ${endpoint}-relation-${kind}: remote unit ${hook.remoteUnit} is not in relation ${hook.id}`);
  }
  if (kind === 'departed' && hook.departingUnit && units.includes(hook.departingUnit)) {
    problems.push(`event ${endpoint}-relation-departed: departing unit ${hook.departingUnit} is still listed in relation ${hook.id}`);
  }
  return problems;
}

/** A secret hook names its secret, and this unit can see that secret (it is in the state). */
function checkSecretEvent(name: string, input: ScenarioInput): string[] {
  if (!input.secret) return [`event ${name} names no secret`];
  return input.secrets?.[input.secret.id] ? [] : [`event ${name}: secret ${input.secret.id} is not in the state`];
}

export function checkEvent(spec: CharmSpec, input: ScenarioInput): string[] {
  const [location, name = ''] = input.dispatchPath.split('/');
  if (location === 'actions') return checkAction(spec, name, input.actionParams);
  const relationHook = parseRelationHookName(name);
  if (relationHook) return checkRelationEvent(spec, input, relationHook.endpoint, relationHook.kind);
  if (name === 'secret-changed') return checkSecretEvent(name, input);
  return (HOOK_NAMES as readonly string[]).includes(name) ? [] : [`hook "${name}" is not one the framework knows`];
}

export function checkConsistency(spec: CharmSpec, input: ScenarioInput): void {
  const problems = [...checkConfig(spec, input.config), ...checkRelations(spec, input.relations), ...checkEvent(spec, input)];
  if (problems.length > 0) throw new InconsistentScenarioError(problems);
}
