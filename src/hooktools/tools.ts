/**
 * The hook tools as Juju's jujuc commands answer them: usage errors exit 2 with `ERROR <msg>`, run-time errors exit 1, JSON on `--format=json`.
 */
import { ACTION_KEY_SEGMENT, RESERVED_ACTION_KEY_SEGMENTS, SETTABLE_STATUSES } from '../ops/jujurules';
import { parseFlags } from './flags';
import { relationTools } from './relationtools';
import { stateTools } from './statetools';
import type { EmulatorState } from './state';
import { format, NO_INPUT, noExtra, OUTPUT_FLAGS, RunError, UsageError, type Tool, type ToolIO } from './toolkit';

export type { ToolIO } from './toolkit';

export interface ToolAnswer {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const STATUSES: readonly string[] = SETTABLE_STATUSES;
const LEVELS = new Set(['TRACE', 'DEBUG', 'INFO', 'WARN', 'WARNING', 'ERROR', 'CRITICAL', 'UNSPECIFIED']);

function requireAction(state: EmulatorState): NonNullable<EmulatorState['action']> {
  if (!state.action) throw new RunError('not running an action');
  return state.action;
}

function setNested(target: Record<string, unknown>, path: string[], value: string): void {
  let node = target;
  for (const segment of path.slice(0, -1)) {
    const next = node[segment];
    if (typeof next !== 'object' || next === null) node[segment] = {};
    node = node[segment] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

const tools: Record<string, Tool> = {
  'config-get'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { ...OUTPUT_FLAGS, all: 'bool' }, aliases: { o: 'output', a: 'all' } });
    const [key, ...rest] = positionals;
    noExtra(rest);
    if (key !== undefined && flags.all) throw new UsageError(`cannot use argument --all together with key "${key}"`);
    const merged = { ...state.configDefaults, ...state.config };
    if (key !== undefined) return format(merged[key] ?? null, flags.format);
    const shown = Object.fromEntries(Object.entries(merged).filter(([, v]) => flags.all || (v !== null && v !== undefined)));
    return format(shown, flags.format);
  },
  'action-get'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: OUTPUT_FLAGS, aliases: { o: 'output' } });
    const [key, ...rest] = positionals;
    noExtra(rest);
    const params = requireAction(state).params;
    if (key === undefined) return format(params, flags.format);
    let node: unknown = params;
    for (const segment of key.split('.')) node = (node as Record<string, unknown> | undefined)?.[segment];
    return format(node ?? null, flags.format);
  },
  'action-set'(args, state) {
    const pairs = args.map((arg) => {
      const eq = arg.indexOf('=');
      if (eq < 0) throw new UsageError(`argument "${arg}" must be of the form key...=value`);
      const path = arg.slice(0, eq).split('.');
      for (const segment of path) {
        if (!ACTION_KEY_SEGMENT.test(segment)) {
          throw new UsageError(`key "${segment}" must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods`);
        }
        if (RESERVED_ACTION_KEY_SEGMENTS.has(segment)) throw new UsageError(`cannot set reserved action key "${segment}"`);
      }
      return { path, value: arg.slice(eq + 1) };
    });
    requireAction(state);
    for (const { path, value } of pairs) setNested(state.actionResults, path, value);
    return '';
  },
  'action-fail'(args, state) {
    const { positionals } = parseFlags(args, { flags: {} });
    if (positionals.length > 1) noExtra(positionals.slice(1));
    requireAction(state);
    state.actionFailed = true;
    state.actionMessage = positionals[0] ?? 'action failed without reason given, check action for errors';
    return '';
  },
  'action-log'(args, state) {
    const { positionals } = parseFlags(args, { flags: {} });
    if (positionals.length === 0) throw new UsageError('no message specified');
    requireAction(state);
    state.actionLogs.push(positionals.join(' '));
    return '';
  },
  'status-set'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { application: 'bool' } });
    const [status, message, ...rest] = positionals;
    if (status === undefined) throw new UsageError('invalid args, require <status> [message]');
    if (!STATUSES.includes(status)) throw new UsageError(`invalid status "${status}", expected one of [${STATUSES.join(' ')}]`);
    noExtra(rest);
    if (flags.application && !state.leader) throw new RunError('this unit is not the leader');
    const value = { status, message: message ?? '' };
    if (flags.application) state.appStatus = value;
    else {
      state.unitStatus = value;
      state.unitStatusHistory.push(value);
    }
    return '';
  },
  'status-get'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { ...OUTPUT_FLAGS, 'include-data': 'bool', application: 'bool' }, aliases: { o: 'output' } });
    noExtra(positionals);
    if (flags.application && !state.leader) throw new RunError('finding application status: this unit is not the leader');
    const s = (flags.application ? state.appStatus : state.unitStatus) ?? { status: 'unknown', message: '' };
    const reading = flags['include-data'] ? { status: s.status, message: s.message, 'status-data': {} } : { status: s.status };
    if (flags.application) return format({ 'application-status': { ...reading, units: {} } }, flags.format);
    if (!flags['include-data'] && (flags.format ?? 'smart') === 'smart') return format(s.status, 'smart');
    return format(reading, flags.format);
  },
  'juju-log'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { 'log-level': 'value', debug: 'bool', format: 'value' }, aliases: { l: 'log-level' } });
    if (positionals.length === 0) throw new UsageError('no message specified');
    let level = flags.debug ? 'DEBUG' : String(flags['log-level'] ?? 'INFO').toUpperCase();
    if (!LEVELS.has(level)) level = 'INFO';
    state.logs.push({ level, message: positionals.join(' ') });
    return '';
  },
  'is-leader'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: OUTPUT_FLAGS, aliases: { o: 'output' } });
    noExtra(positionals);
    return format(state.leader, flags.format);
  },
  'application-version-set'(args, state) {
    const { positionals } = parseFlags(args, { flags: {} });
    if (positionals.length === 0) throw new UsageError('no version specified');
    noExtra(positionals.slice(1));
    state.workloadVersion = positionals[0] as string;
    return '';
  },
  'secret-get'(args, state) {
    const { flags, positionals } = parseFlags(args, { flags: { format: 'value', output: 'value', label: 'value', peek: 'bool', refresh: 'bool' }, aliases: { o: 'output' } });
    const fmt = flags.format ?? 'yaml';
    if (fmt !== 'yaml' && fmt !== 'json') throw new UsageError(`unknown format "${String(fmt)}"`);
    const [id, key, ...rest] = positionals;
    noExtra(rest);
    if (!id && !flags.label) throw new UsageError('require either a secret URI or label');
    if (id && !id.startsWith('secret:')) throw new UsageError(`secret URI "${id}" not valid`);
    if (flags.peek && flags.refresh) throw new UsageError('specify one of --peek or --refresh but not both');
    const content = (id && state.secrets[id]) || (typeof flags.label === 'string' && state.secrets[flags.label]);
    if (!content) throw new RunError(`secret "${id ?? flags.label}" not found`);
    return format(key ? (content[key] ?? null) : content, fmt);
  },
  ...relationTools,
  ...stateTools,
};

export const TOOL_NAMES = Object.keys(tools);

/** Runs one tool against the state, changing it as Juju would; `io` gives what --file names. */
export function runTool(tool: string, args: string[], state: EmulatorState, io: ToolIO = NO_INPUT): ToolAnswer {
  state.calls.push([tool, ...args]);
  const impl = tools[tool];
  if (!impl) return { stdout: '', stderr: `ERROR bad request: unknown command: ${tool}\n`, exitCode: 1 };
  try {
    return { stdout: impl(args, state, io), stderr: '', exitCode: 0 };
  } catch (error) {
    const usage = error instanceof UsageError;
    return { stdout: '', stderr: `ERROR ${(error as Error).message}\n`, exitCode: usage ? 2 : 1 };
  }
}
