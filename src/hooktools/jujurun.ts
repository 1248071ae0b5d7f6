/**
 * `juju run <unit> [<unit> ...] <action> [key[.key ...]=value ...]` as Juju 3's client reads it,
 * before anything reaches the unit: units, then the action's name, then `key=value` words whose
 * values are YAML unless `--string-args` is given. So `reason=repair: serial cable` (what the
 * shell leaves of `reason="repair: serial cable"`) is a map, not a string, and `agents=*` is a
 * YAML alias with no anchor, an error. Tests run documented commands through this to catch those.
 */
import { parseDocument } from 'yaml';

export class JujuRunError extends Error {
  override readonly name = 'JujuRunError';
}

export interface JujuRun {
  units: string[];
  action: string;
  params: Record<string, unknown>;
}

/** `mysql/3` or `mysql/leader`: an application name, a slash, a unit number or `leader`. */
const UNIT_OR_LEADER = /^[a-z][a-z0-9]*(?:-[a-z0-9]*[a-z][a-z0-9]*)*\/(?:\d+|leader)$/;
/** An action name, and each key of `key.key=value`: lowercase letters, digits and inner hyphens. */
const NAME = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/** `juju run`'s own switches, and the global ones; each takes no value. */
const SWITCHES = new Set(['--background', '--string-args', '--utc', '--color', '--no-color', '-B', '--no-browser-login', '--debug', '--verbose', '--quiet', '--show-log']);
/** Its options that take a value (`--wait=2m` or `--wait 2m`). `--params` reads a file: not emulated. */
const OPTIONS = new Set(['--wait', '--format', '-o', '--output', '-m', '--model', '--logging-config']);

/** Splits flags (anywhere, as Juju's flag parser allows, up to `--`) from the positional words. */
function splitFlags(argv: readonly string[]): { positional: string[]; stringArgs: boolean } {
  const positional: string[] = [];
  let stringArgs = false;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith('-')) {
      positional.push(word);
      continue;
    }
    const [flag = '', inlineValue] = word.split(/=(.*)/s, 2);
    if (flag === '--params') throw new JujuRunError('--params: a params file is not emulated; give key=value words');
    if (SWITCHES.has(flag) && inlineValue === undefined) stringArgs ||= flag === '--string-args';
    else if (OPTIONS.has(flag)) i += inlineValue === undefined ? 1 : 0;
    else throw new JujuRunError(`flag provided but not defined: ${flag}`);
  }
  return { positional, stringArgs };
}

/**
 * One value as Juju reads it: YAML 1.1 (its YAML library), so `yes` is true and `2024.10` a
 * number. An empty value, or one that is only a comment, stays the raw string; a timestamp stays
 * a string too, as that library gives it.
 */
function yamlValue(raw: string): unknown {
  const doc = parseDocument(raw, { version: '1.1' });
  if (doc.errors.length > 0) throw new JujuRunError(`${JSON.stringify(raw)}: not YAML: ${doc.errors[0]?.message.split('\n')[0]}`);
  if (doc.contents === null) return raw;
  try {
    const value: unknown = doc.toJS();
    return value instanceof Date ? raw : value;
  } catch (error) {
    throw new JujuRunError(`${JSON.stringify(raw)}: not YAML: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** Sets `params[k1][k2]... = value`, making the maps on the way (a later word wins). */
function setNested(params: Record<string, unknown>, keys: readonly string[], value: unknown): void {
  let map = params;
  for (const key of keys.slice(0, -1)) {
    const next = map[key];
    map = map[key] = typeof next === 'object' && next !== null && !Array.isArray(next) ? (next as Record<string, unknown>) : {};
  }
  map[keys[keys.length - 1] as string] = value;
}

/**
 * @param argv the words after `juju run`, as the shell gives them (quotes already removed).
 * @param options.stringArgs as if `--string-args` were given (it may also be among the words).
 */
export function parseJujuRunArgs(argv: readonly string[], options: { stringArgs?: boolean } = {}): JujuRun {
  const { positional, stringArgs } = splitFlags(argv);
  const units: string[] = [];
  let action: string | undefined;
  let rest = 0;
  for (const [i, word] of positional.entries()) {
    if (UNIT_OR_LEADER.test(word)) {
      units.push(word);
      continue;
    }
    if (!NAME.test(word)) throw new JujuRunError(`invalid unit or action name ${JSON.stringify(word)}`);
    action = word;
    rest = i + 1;
    break;
  }
  if (units.length === 0) throw new JujuRunError('no unit specified');
  if (action === undefined) throw new JujuRunError('no action specified');
  if (new Set(units.map((u) => u.split('/')[0])).size > 1) throw new JujuRunError('all units must be of the same application');
  const params: Record<string, unknown> = {};
  for (const word of positional.slice(rest)) {
    const eq = word.indexOf('=');
    if (eq < 0) throw new JujuRunError(`argument ${JSON.stringify(word)} must be of the form key.key.key...=value`);
    const keys = word.slice(0, eq).split('.');
    const bad = keys.find((k) => !NAME.test(k));
    if (bad !== undefined) throw new JujuRunError(`key ${JSON.stringify(bad)} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric and hyphens`);
    const raw = word.slice(eq + 1);
    setNested(params, keys, stringArgs || options.stringArgs ? raw : yamlValue(raw));
  }
  return { units, action, params };
}
