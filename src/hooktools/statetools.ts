/**
 * state-get, state-set and state-delete: the charm's own key-value state, kept by the controller
 * (Juju 2.8 and later), with the flags and refusals of Juju's jujuc commands.
 */
import { parseFlags } from './flags';
import { settingsFromArgs, settingsFromFile } from './relationtools';
import { format, noExtra, OUTPUT_FLAGS, RunError, type Tool } from './toolkit';

export const stateTools: Record<string, Tool> = {
  /** No key (or `-`): the whole map. A missing key reads as empty, or fails with --strict. */
  'state-get'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { ...OUTPUT_FLAGS, strict: 'bool' }, aliases: { o: 'output' } });
    const [rawKey, ...rest] = positionals;
    noExtra(rest);
    const key = rawKey === '-' ? undefined : rawKey;
    if (key === undefined) return format({ ...state.charmState }, flags.format);
    const value = state.charmState[key];
    if (value === undefined && flags.strict) throw new RunError(`"${key}" not found`);
    return format(value ?? '', flags.format);
  },
  /** `key=value` arguments over a YAML map given with --file (`-`: stdin). */
  'state-set'(args, state, io) {
    const { flags, positionals } = parseFlags(args, { flags: { file: 'value' } });
    const overrides = settingsFromArgs(positionals);
    const fromFile = typeof flags.file === 'string' ? settingsFromFile(io.readInput(flags.file)) : {};
    Object.assign(state.charmState, fromFile, overrides);
    return '';
  },
  /** Juju deletes nothing when it is given no key. */
  'state-delete'(args, state) {
    const { positionals } = parseFlags(args, { flags: {} });
    const [key, ...rest] = positionals;
    noExtra(rest);
    if (key) delete state.charmState[key];
    return '';
  },
};
