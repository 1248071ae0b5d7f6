/**
 * Rules Juju's hook tools enforce, kept in one place: the framework checks them before calling a
 * tool (so a programming error names the key), and the emulated tools refuse with them.
 */

/** Each dot-separated segment of an action-set key. */
export const ACTION_KEY_SEGMENT = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/** Juju adds these itself after the action ends; action-set refuses them in any segment. */
export const RESERVED_ACTION_KEY_SEGMENTS: ReadonlySet<string> = new Set(['stdout', 'stdout-encoding', 'stderr', 'stderr-encoding']);

/** The statuses a charm may set (Juju refuses `error`, `unknown` and `terminated` from status-set). */
export const SETTABLE_STATUSES = ['maintenance', 'blocked', 'waiting', 'active'] as const;
export type StatusName = (typeof SETTABLE_STATUSES)[number];

/** The five hooks of a relation endpoint, named `<endpoint>-relation-<kind>`. */
export const RELATION_HOOK_KINDS = ['created', 'joined', 'changed', 'departed', 'broken'] as const;
export type RelationHookKind = (typeof RELATION_HOOK_KINDS)[number];

const RELATION_HOOK = /^(.+)-relation-(created|joined|changed|departed|broken)$/;

export function parseRelationHookName(name: string): { endpoint: string; kind: RelationHookKind } | undefined {
  const match = RELATION_HOOK.exec(name);
  return match ? { endpoint: match[1] as string, kind: match[2] as RelationHookKind } : undefined;
}

/** `cos-agent:3` or `3`, as JUJU_RELATION_ID and `-r` give it; the number is what counts. */
export function parseRelationId(text: string): number | undefined {
  const digits = text.slice(text.lastIndexOf(':') + 1);
  return /^\d+$/.test(digits) ? Number(digits) : undefined;
}
