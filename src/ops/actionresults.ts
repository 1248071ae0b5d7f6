import { ActionResultKeyError } from './errors';
import { ACTION_KEY_SEGMENT, RESERVED_ACTION_KEY_SEGMENTS } from './jujurules';

export type ActionResults = { [key: string]: ActionResultValue };
export type ActionResultValue = string | number | boolean | readonly string[] | ActionResults;

export function validateActionResultKey(key: string): void {
  for (const segment of key.split('.')) {
    if (!ACTION_KEY_SEGMENT.test(segment)) {
      throw new ActionResultKeyError(
        key,
        `segment "${segment}" must start and end with a lowercase letter or digit and hold only lowercase letters, digits and hyphens`,
      );
    }
    if (RESERVED_ACTION_KEY_SEGMENTS.has(segment)) throw new ActionResultKeyError(key, `"${segment}" is reserved by Juju`);
  }
}

/**
 * Flattens nested results to the dotted `key=value` pairs action-set takes, validating every
 * key. Juju stores only strings, so lists become comma-separated text.
 */
export function flattenActionResults(results: ActionResults, prefix = ''): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [key, value] of Object.entries(results)) {
    const fullKey = prefix ? `${prefix}.${key}` : key;
    if (isResultMap(value)) {
      for (const [k, v] of Object.entries(flattenActionResults(value, fullKey))) addUnique(flat, k, v);
      continue;
    }
    validateActionResultKey(fullKey);
    addUnique(flat, fullKey, Array.isArray(value) ? value.join(',') : String(value));
  }
  return flat;
}

function isResultMap(value: ActionResultValue): value is ActionResults {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function addUnique(flat: Record<string, string>, key: string, value: string): void {
  if (key in flat) throw new ActionResultKeyError(key, 'given twice once flattened');
  flat[key] = value;
}
