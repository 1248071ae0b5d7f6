/** Errors raised at the framework's edges. Each names the operation that failed. */

/** A hook tool exited non-zero or could not be started. */
export class HookToolError extends Error {
  override readonly name = 'HookToolError';
  constructor(
    readonly tool: string,
    readonly args: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`${tool} failed (exit ${exitCode ?? 'none'}): ${stderr.trim() || 'no output'}`, options);
  }
}

/** An action result key that Juju's action-set would refuse; a programming error. */
export class ActionResultKeyError extends Error {
  override readonly name = 'ActionResultKeyError';
  constructor(readonly key: string, reason: string) {
    super(`invalid action result key "${key}": ${reason}`);
  }
}

/** An uncaught error in a hook handler, as the test harness reports it. */
export class UncaughtCharmError extends Error {
  override readonly name = 'UncaughtCharmError';
  constructor(event: string, cause: unknown) {
    super(`uncaught error in ${event}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** A data bag this unit may not read or write: a remote bag, or its app's bag when not the leader. */
export class RelationDataAccessError extends Error {
  override readonly name = 'RelationDataAccessError';
}

/** getRelation(endpoint) without an id, when the endpoint has more than one relation. */
export class TooManyRelatedAppsError extends Error {
  override readonly name = 'TooManyRelatedAppsError';
  constructor(readonly endpoint: string, readonly count: number) {
    super(`endpoint ${endpoint} has ${count} relations; give the relation id`);
  }
}
