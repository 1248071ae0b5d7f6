/**
 * The command line, as upstream's connector takes it:
 *   testflinger-device-connector <device-type> <stage> -c|--config <default.yaml> <testflinger.json>
 * plus -h/--help. Like upstream's (argparse), options may come as `--config=FILE`, `-cFILE` or a
 * unique prefix of `--config`/`--help`, and `--` ends the options. Anything else is refused with
 * a message; untrusted words are quoted in it.
 */
import { UsageError } from './errors';
import { CONNECTOR_PHASES, type ConnectorPhase, type DeviceType, resolveDeviceType, supportedDeviceTypeNames } from './devices';
import { quoted } from '../common/text';

/** Upstream's stage names that differ from ours; `setup` is ours only (the tf-setup script calls it). */
export const STAGE_ALIASES: ReadonlyMap<string, ConnectorPhase> = new Map([['runtest', 'test']]);

export const USAGE = `usage: testflinger-device-connector <device-type> <phase> -c <default.yaml> <testflinger.json>
device types: ${supportedDeviceTypeNames().join(', ')}
phases: ${CONNECTOR_PHASES.join(', ')} (runtest is test, as upstream's connector calls it)`;

export type Command = { help: true } | { help: false; type: DeviceType; phase: ConnectorPhase; configFile: string; jobFile: string };

interface RawCommand {
  help: boolean;
  configFile?: string;
  positionals: string[];
}

/** argparse takes any unique prefix of a long option; `--c` .. `--config`, `--h` .. `--help`. */
function longOption(token: string): { name: 'config' | 'help'; value?: string } | undefined {
  const eq = token.indexOf('=');
  const word = token.slice(2, eq === -1 ? undefined : eq);
  const value = eq === -1 ? undefined : token.slice(eq + 1);
  if (word.length === 0) return undefined;
  if ('config'.startsWith(word)) return { name: 'config', value };
  if ('help'.startsWith(word) && value === undefined) return { name: 'help' };
  return undefined;
}

function unknownOption(token: string): UsageError {
  return new UsageError(`unknown option ${quoted(token)}; upstream's connector takes only -c/--config and -h/--help, and so does this one`);
}

function configValue(next: string | undefined): string {
  if (next === undefined || next.startsWith('-')) throw new UsageError('-c/--config needs the device config file (default.yaml)');
  return next;
}

function tokenize(argv: readonly string[]): RawCommand {
  const raw: RawCommand = { help: false, positionals: [] };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] ?? '';
    if (token === '--') {
      raw.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (token.startsWith('--')) {
      const option = longOption(token);
      if (!option) throw unknownOption(token);
      if (option.name === 'help') raw.help = true;
      else raw.configFile = option.value ?? configValue(argv[++i]);
    } else if (token === '-h') {
      raw.help = true;
    } else if (token.startsWith('-c')) {
      raw.configFile = token.length > 2 ? token.slice(2) : configValue(argv[++i]);
    } else if (token.startsWith('-') && token !== '-') {
      throw unknownOption(token);
    } else {
      raw.positionals.push(token);
    }
  }
  return raw;
}

export function resolvePhase(stage: string): ConnectorPhase {
  const phase = (CONNECTOR_PHASES as readonly string[]).includes(stage) ? (stage as ConnectorPhase) : STAGE_ALIASES.get(stage);
  if (!phase) throw new UsageError(`unknown phase ${quoted(stage)}; phases: ${[...CONNECTOR_PHASES, ...STAGE_ALIASES.keys()].join(', ')}`);
  return phase;
}

/** The command to run, or a UsageError saying what is wrong (the first problem, in argument order). */
export function parseCommandLine(argv: readonly string[]): Command {
  const raw = tokenize(argv);
  if (raw.help) return { help: true };
  const [typeName, stage, jobFile, ...extra] = raw.positionals;
  if (typeName === undefined) throw new UsageError('missing device type');
  const type = resolveDeviceType(typeName);
  if (stage === undefined) throw new UsageError('missing phase');
  const phase = resolvePhase(stage);
  if (raw.configFile === undefined) throw new UsageError('missing -c <default.yaml>');
  if (jobFile === undefined) throw new UsageError('missing <testflinger.json>');
  if (extra.length > 0) throw new UsageError(`unexpected argument ${quoted(extra[0])}`);
  return { help: false, type, phase, configFile: raw.configFile, jobFile };
}
