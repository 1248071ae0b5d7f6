import * as path from 'node:path';
import { z } from 'zod';
import { parseRelationId } from './jujurules';

/** What Juju tells a charm process about the event, read once from the environment. */
export interface JujuContext {
  /** `hooks/<name>` or `actions/<name>`. */
  readonly dispatchPath: string;
  readonly unitName: string;
  readonly appName: string;
  readonly charmDir: string;
  readonly modelName: string;
  readonly modelUuid: string;
  readonly jujuVersion: string;
  readonly actionName: string | undefined;
  readonly actionId: string | undefined;
  /** In a relation hook: its endpoint and relation id, and who is on the other side. */
  readonly relationName: string | undefined;
  readonly relationId: number | undefined;
  readonly remoteUnit: string | undefined;
  readonly remoteApp: string | undefined;
  /** In relation-departed: the unit that is leaving (maybe this one). */
  readonly departingUnit: string | undefined;
  /** In a secret hook (secret-changed ...): the secret's URI, its label here if it has one, and its revision when Juju gives one (above 0). */
  readonly secretId: string | undefined;
  readonly secretLabel: string | undefined;
  readonly secretRevision: number | undefined;
}

const envSchema = z.object({
  JUJU_DISPATCH_PATH: z.string().min(1).optional(),
  JUJU_UNIT_NAME: z.string().default(''),
  JUJU_CHARM_DIR: z.string().optional(),
  CHARM_DIR: z.string().optional(),
  JUJU_MODEL_NAME: z.string().default(''),
  JUJU_MODEL_UUID: z.string().default(''),
  JUJU_VERSION: z.string().default(''),
  JUJU_ACTION_NAME: z.string().optional(),
  JUJU_ACTION_UUID: z.string().optional(),
  JUJU_RELATION: z.string().optional(),
  JUJU_RELATION_ID: z.string().optional(),
  JUJU_REMOTE_UNIT: z.string().optional(),
  JUJU_REMOTE_APP: z.string().optional(),
  JUJU_DEPARTING_UNIT: z.string().optional(),
  JUJU_SECRET_ID: z.string().optional(),
  JUJU_SECRET_LABEL: z.string().optional(),
  JUJU_SECRET_REVISION: z.string().optional(),
});

/**
 * Reads the environment once. Without JUJU_DISPATCH_PATH (Juju before 2.8) the event comes from
 * the name the process was invoked as: `.../hooks/install` or `.../actions/update-configs`.
 */
export function jujuContextFromEnv(
  env: NodeJS.ProcessEnv,
  invokedAs: string,
  fallbackCharmDir: string,
): JujuContext {
  const vars = envSchema.parse(env);
  const dispatchPath = vars.JUJU_DISPATCH_PATH ?? dispatchPathFromInvocation(invokedAs);
  return Object.freeze({
    dispatchPath,
    unitName: vars.JUJU_UNIT_NAME,
    appName: vars.JUJU_UNIT_NAME.split('/')[0] ?? '',
    charmDir: vars.JUJU_CHARM_DIR ?? vars.CHARM_DIR ?? fallbackCharmDir,
    modelName: vars.JUJU_MODEL_NAME,
    modelUuid: vars.JUJU_MODEL_UUID,
    jujuVersion: vars.JUJU_VERSION,
    actionName: vars.JUJU_ACTION_NAME || undefined,
    actionId: vars.JUJU_ACTION_UUID || undefined,
    relationName: vars.JUJU_RELATION || undefined,
    relationId: vars.JUJU_RELATION_ID ? parseRelationId(vars.JUJU_RELATION_ID) : undefined,
    remoteUnit: vars.JUJU_REMOTE_UNIT || undefined,
    // Older Juju sets no JUJU_REMOTE_APP; the remote unit's name holds it.
    remoteApp: vars.JUJU_REMOTE_APP || vars.JUJU_REMOTE_UNIT?.split('/')[0] || undefined,
    departingUnit: vars.JUJU_DEPARTING_UNIT || undefined,
    secretId: vars.JUJU_SECRET_ID || undefined,
    secretLabel: vars.JUJU_SECRET_LABEL || undefined,
    secretRevision: parseSecretRevision(vars.JUJU_SECRET_REVISION),
  });
}

/** Juju sets the revision only when it is above 0; anything but a positive integer is no revision. */
function parseSecretRevision(text: string | undefined): number | undefined {
  return text && /^[1-9]\d{0,9}$/.test(text) ? Number(text) : undefined;
}

function dispatchPathFromInvocation(invokedAs: string): string {
  const name = path.basename(invokedAs);
  const parent = path.basename(path.dirname(invokedAs));
  return parent === 'actions' ? `actions/${name}` : `hooks/${name}`;
}

export type DispatchTarget = { kind: 'hook'; name: string } | { kind: 'action'; name: string };

/**
 * `hooks/install`, `actions/update-configs`, or a path ending so (dispatch falls back to its
 * own invocation path, `$0`, on Juju before 2.8).
 */
export function parseDispatchPath(dispatchPath: string): DispatchTarget {
  const name = path.basename(dispatchPath);
  const location = path.basename(path.dirname(dispatchPath));
  if (!name) throw new Error(`cannot tell the event from dispatch path "${dispatchPath}"`);
  if (location === 'actions') return { kind: 'action', name };
  if (location === 'hooks') return { kind: 'hook', name };
  throw new Error(`dispatch path "${dispatchPath}" is neither hooks/<name> nor actions/<name>`);
}
