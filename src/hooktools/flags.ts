/**
 * A small parser with the habits of Go's gnuflag as Juju's tools use it: flags may come between
 * positionals, `--` ends flags, `--name=value` or `--name value`, boolean flags take
 * `--name` or `--name=true|false|True|False|1|0`.
 */
export interface FlagSpec {
  /** Long name → whether it is boolean. Short aliases map to their long name. */
  flags: Record<string, 'bool' | 'value'>;
  aliases?: Record<string, string>;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const BOOL_VALUES: Record<string, boolean> = { true: true, True: true, TRUE: true, '1': true, t: true, T: true, false: false, False: false, FALSE: false, '0': false, f: false, F: false };

export function parseFlags(args: readonly string[], spec: FlagSpec): { flags: Record<string, string | boolean>; positionals: string[] } {
  const flags: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const rawName = eq >= 0 ? body.slice(0, eq) : body;
    const name = spec.aliases?.[rawName] ?? rawName;
    const kind = spec.flags[name];
    if (!kind) throw new UsageError(`flag provided but not defined: ${arg.split('=')[0]}`);
    if (kind === 'bool') {
      if (eq < 0) flags[name] = true;
      else {
        const v = BOOL_VALUES[body.slice(eq + 1)];
        if (v === undefined) throw new UsageError(`invalid boolean value "${body.slice(eq + 1)}" for flag ${arg.split('=')[0]}`);
        flags[name] = v;
      }
    } else if (eq >= 0) flags[name] = body.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined) throw new UsageError(`flag needs an argument: ${arg}`);
      flags[name] = next;
      i++;
    }
  }
  return { flags, positionals };
}
