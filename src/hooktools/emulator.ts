/**
 * A Juju unit on this machine for the demo, the tests and the benchmark: a directory of hook
 * tools (links to dist/hooktool.js) and a state file, and a way to run the charm's dispatch as
 * Juju would, with an environment built from scratch.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import execa from 'execa';
import { charmSpecFrom, configDefaultsFrom, defaultUnitName } from './charmspec';
import { emptyState, readState, writeState, type EmulatorState, type HookRelation } from './state';
import { TOOL_NAMES } from './tools';

export interface EmulatedUnit {
  readonly dir: string;
  readonly binDir: string;
  readonly statePath: string;
  state(): EmulatorState;
  update(change: (state: EmulatorState) => void): void;
}

/**
 * @param charmDir its config.yaml gives the defaults config-get merges in, as Juju does.
 */
export function createEmulatedUnit(dir: string, hooktoolBundle: string, charmDir: string, initial: Partial<EmulatorState> = {}): EmulatedUnit {
  const binDir = path.join(dir, 'tools');
  fs.mkdirSync(binDir, { recursive: true });
  for (const tool of TOOL_NAMES) {
    const link = path.join(binDir, tool);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.resolve(hooktoolBundle), link);
  }
  const statePath = path.join(dir, 'juju-state.json');
  writeState(statePath, { ...emptyState(), configDefaults: configDefaultsFrom(charmDir), ...initial });
  return {
    dir,
    binDir,
    statePath,
    state: () => readState(statePath),
    update(change) {
      const s = readState(statePath);
      change(s);
      writeState(statePath, s);
    },
  };
}

/** The secret a secret hook is about, as Juju names it in JUJU_SECRET_ID, _LABEL and _REVISION. */
export interface HookSecret {
  id: string;
  label?: string;
  revision?: number;
}

export interface DispatchOptions {
  charmDir: string;
  /** By default unit 0 of the application the charm dir's metadata.yaml names. */
  unitName?: string;
  /** Extra variables, e.g. AGENT_HOST_ROOT for the sandbox. */
  env?: Record<string, string>;
  /** For a relation hook: the relation (in the unit's state) and the remote side Juju names. */
  relation?: HookRelation;
  /** For a secret hook (secret-changed): the secret. */
  secret?: HookSecret;
}

export interface DispatchResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs one hook (`hooks/install`) or action (`actions/update-configs`) the way Juju does. */
export async function dispatchEvent(
  unit: EmulatedUnit,
  dispatchPath: string,
  options: DispatchOptions & { actionParams?: Record<string, unknown> },
): Promise<DispatchResult> {
  const isAction = dispatchPath.startsWith('actions/');
  const name = dispatchPath.split('/')[1] ?? '';
  const unitName = options.unitName ?? defaultUnitName(charmSpecFrom(options.charmDir), 'dispatchEvent');
  const hookRelation = options.relation ? completeHookRelation(unit.state(), options.relation) : null;
  unit.update((s) => {
    s.unitName = unitName;
    s.hookRelation = hookRelation;
    s.action = isAction ? { name, params: options.actionParams ?? {} } : null;
    if (isAction) Object.assign(s, { actionResults: {}, actionFailed: false, actionMessage: '', actionLogs: [] });
  });
  const env: Record<string, string> = {
    PATH: `${unit.binDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    HOOKTOOL_STATE: unit.statePath,
    JUJU_CHARM_DIR: options.charmDir,
    CHARM_DIR: options.charmDir,
    JUJU_UNIT_NAME: unitName,
    JUJU_MODEL_NAME: 'local',
    JUJU_MODEL_UUID: '00000000-0000-4000-8000-000000000000',
    JUJU_VERSION: '3.6.0',
    JUJU_HOOK_NAME: isAction ? '' : name,
    JUJU_CONTEXT_ID: `${unitName}-${name}-1`,
    JUJU_DISPATCH_PATH: dispatchPath,
    LANG: 'C.UTF-8',
    ...(isAction ? { JUJU_ACTION_NAME: name, JUJU_ACTION_UUID: '1', JUJU_ACTION_TAG: 'action-1' } : {}),
    ...(hookRelation ? relationEnvironment(unit.state(), hookRelation) : {}),
    ...(options.secret ? secretEnvironment(options.secret) : {}),
    ...options.env,
  };
  const program = path.join(options.charmDir, 'dispatch');
  const started = process.hrtime.bigint();
  const result = await execa(program, [], { cwd: options.charmDir, env, extendEnv: false, reject: false, stdin: 'ignore' });
  const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
  unit.update((s) => {
    s.action = null;
    s.hookRelation = null;
  });
  return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr, durationMs };
}

function relationIn(state: EmulatorState, id: number) {
  const relation = state.relations.find((r) => r.id === id);
  if (!relation) throw new Error(`relation ${id} is not in the emulated unit's state`);
  return relation;
}

/** Juju always names the remote application in a relation hook. */
function completeHookRelation(state: EmulatorState, hook: HookRelation): HookRelation {
  return { ...hook, remoteApp: hook.remoteApp ?? relationIn(state, hook.id).remoteApp };
}

/** The variables Juju sets for a secret hook: the revision only when it is above 0. */
function secretEnvironment(secret: HookSecret): Record<string, string> {
  const env: Record<string, string> = { JUJU_SECRET_ID: secret.id };
  if (secret.label) env['JUJU_SECRET_LABEL'] = secret.label;
  if (secret.revision && secret.revision > 0) env['JUJU_SECRET_REVISION'] = String(secret.revision);
  return env;
}

/** The variables Juju sets for a relation hook. */
function relationEnvironment(state: EmulatorState, hook: HookRelation): Record<string, string> {
  const relation = relationIn(state, hook.id);
  const env: Record<string, string> = {
    JUJU_RELATION: relation.endpoint,
    JUJU_RELATION_ID: `${relation.endpoint}:${relation.id}`,
    JUJU_REMOTE_APP: hook.remoteApp ?? relation.remoteApp,
  };
  if (hook.remoteUnit) env['JUJU_REMOTE_UNIT'] = hook.remoteUnit;
  if (hook.departingUnit) env['JUJU_DEPARTING_UNIT'] = hook.departingUnit;
  return env;
}
