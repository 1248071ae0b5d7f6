/**
 * One thin function per Juju hook tool, spoken as Juju's jujuc commands expect: `--format=json` where the tool prints, `--` before
 * free text so a message starting with "-" is never read as a flag.
 */
import execa from 'execa';
import { failureText } from '../common/exec';
import { HookToolError } from './errors';
import type { StatusName } from './status';

/**
 * Runs one hook tool and returns its stdout; throws HookToolError on a non-zero exit. `stdin`
 * carries what must not go in argv (relation data can exceed the argument limit).
 */
export type ToolRunner = (tool: string, args: readonly string[], stdin?: string) => Promise<string>;

export const execaToolRunner: ToolRunner = async (tool, args, stdin) => {
  const result = await execa(tool, [...args], { reject: false, ...(stdin === undefined ? { stdin: 'ignore' } : { input: stdin }) });
  if (result.exitCode !== 0 || result.failed) {
    throw new HookToolError(tool, args, result.exitCode, result.stderr || failureText(result));
  }
  return result.stdout;
};

function parseJson(tool: string, out: string): unknown {
  try {
    return out.trim() === '' ? null : JSON.parse(out);
  } catch (cause) {
    throw new HookToolError(tool, ['--format=json'], 0, `unreadable JSON output: ${out.slice(0, 200)}`, { cause });
  }
}

function asObject(tool: string, value: unknown): Record<string, unknown> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new HookToolError(tool, ['--format=json'], 0, `expected a JSON object, got ${JSON.stringify(value)}`);
  }
  return value as Record<string, unknown>;
}

export async function configGet(run: ToolRunner): Promise<Record<string, unknown>> {
  return asObject('config-get', parseJson('config-get', await run('config-get', ['--format=json'])));
}

export async function actionGet(run: ToolRunner): Promise<Record<string, unknown>> {
  return asObject('action-get', parseJson('action-get', await run('action-get', ['--format=json'])));
}

/** Keys must already be flattened and valid (see flattenActionResults). */
export async function actionSet(run: ToolRunner, results: Readonly<Record<string, string>>): Promise<void> {
  const pairs = Object.entries(results).map(([k, v]) => `${k}=${v}`);
  if (pairs.length > 0) await run('action-set', pairs);
}

export async function actionFail(run: ToolRunner, message: string): Promise<void> {
  await run('action-fail', ['--', message]);
}

export async function actionLog(run: ToolRunner, message: string): Promise<void> {
  await run('action-log', ['--', message]);
}

export async function statusSet(
  run: ToolRunner,
  status: StatusName,
  message: string,
  options: { application?: boolean } = {},
): Promise<void> {
  await run('status-set', [`--application=${options.application ? 'True' : 'False'}`, status, '--', message]);
}

export interface StatusReading {
  status: string;
  message: string;
}

export async function statusGet(run: ToolRunner, options: { application?: boolean } = {}): Promise<StatusReading> {
  const application = options.application ?? false;
  const out = asObject(
    'status-get',
    parseJson(
      'status-get',
      await run('status-get', ['--include-data', '--format=json', `--application=${application ? 'true' : 'false'}`]),
    ),
  );
  const reading = application ? asObject('status-get', out['application-status'] ?? null) : out;
  return { status: String(reading['status'] ?? 'unknown'), message: String(reading['message'] ?? '') };
}

export type LogLevel = 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR' | 'CRITICAL';

export async function jujuLog(run: ToolRunner, level: LogLevel, message: string): Promise<void> {
  await run('juju-log', ['--log-level', level, '--', message]);
}

export async function isLeader(run: ToolRunner): Promise<boolean> {
  return parseJson('is-leader', await run('is-leader', ['--format=json'])) === true;
}

export async function applicationVersionSet(run: ToolRunner, version: string): Promise<void> {
  await run('application-version-set', ['--', version]);
}

export interface SecretRef {
  id?: string;
  label?: string;
}

export async function secretGet(
  run: ToolRunner,
  ref: SecretRef,
  options: { refresh?: boolean; peek?: boolean } = {},
): Promise<Record<string, string>> {
  if (!ref.id && !ref.label) throw new Error('secret-get needs a secret id or a label');
  const args = ['--format=json'];
  if (ref.id) args.push(ref.id);
  if (ref.label) args.push('--label', ref.label);
  if (options.refresh) args.push('--refresh');
  if (options.peek) args.push('--peek');
  const content = asObject('secret-get', parseJson('secret-get', await run('secret-get', args)));
  return Object.fromEntries(Object.entries(content).map(([k, v]) => [k, String(v)]));
}

/** `endpoint:id` for each relation on the endpoint, as relation-ids prints them. */
export async function relationIds(run: ToolRunner, endpoint: string): Promise<number[]> {
  const out = parseJson('relation-ids', await run('relation-ids', [endpoint, '--format=json']));
  return asStringList('relation-ids', out).map((fakeId) => Number(fakeId.slice(fakeId.lastIndexOf(':') + 1)));
}

export async function relationList(run: ToolRunner, relationId: number): Promise<string[]> {
  return asStringList('relation-list', parseJson('relation-list', await run('relation-list', ['-r', String(relationId), '--format=json'])));
}

export async function relationRemoteApp(run: ToolRunner, relationId: number): Promise<string | undefined> {
  const out = parseJson('relation-list', await run('relation-list', ['-r', String(relationId), '--app', '--format=json']));
  return typeof out === 'string' && out !== '' ? out : undefined;
}

/** Every key of one bag: a unit's (`app/0`) or, with `app`, an application's. */
export async function relationGet(
  run: ToolRunner,
  relationId: number,
  unitOrApp: string,
  options: { app?: boolean } = {},
): Promise<Record<string, string>> {
  const args = ['-r', String(relationId), ...(options.app ? ['--app'] : []), '--format=json', '-', unitOrApp];
  const bag = asObject('relation-get', parseJson('relation-get', await run('relation-get', args)));
  return Object.fromEntries(Object.entries(bag).map(([k, v]) => [k, String(v)]));
}

/** Writes keys to this unit's bag (or, with `app`, its application's); "" removes a key. Values go on stdin. */
export async function relationSet(
  run: ToolRunner,
  relationId: number,
  values: Readonly<Record<string, string>>,
  options: { app?: boolean } = {},
): Promise<void> {
  if (Object.keys(values).length === 0) return;
  await run('relation-set', ['-r', String(relationId), ...(options.app ? ['--app'] : []), '--file', '-'], JSON.stringify(values));
}

/** The charm's whole state on the controller (state-get with no key). */
export async function stateGet(run: ToolRunner): Promise<Record<string, string>> {
  const content = asObject('state-get', parseJson('state-get', await run('state-get', ['--format=json'])));
  return Object.fromEntries(Object.entries(content).map(([k, v]) => [k, String(v)]));
}

/** Values go on stdin, never argv (a value may be long, or one the process list should not show). */
export async function stateSet(run: ToolRunner, values: Readonly<Record<string, string>>): Promise<void> {
  if (Object.keys(values).length === 0) return;
  await run('state-set', ['--file', '-'], JSON.stringify(values));
}

export async function stateDelete(run: ToolRunner, key: string): Promise<void> {
  await run('state-delete', [key]);
}

function asStringList(tool: string, value: unknown): string[] {
  if (value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new HookToolError(tool, ['--format=json'], 0, `expected a JSON list of strings, got ${JSON.stringify(value)}`);
  }
  return value as string[];
}
