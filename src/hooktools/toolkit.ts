/** What every emulated tool shares: output formats, argument checks, and the two kinds of refusal. */
import { UsageError } from './flags';
import type { EmulatorState } from './state';

export { UsageError };

/** A refusal at run time: Juju's tools exit 1 for these (usage errors exit 2). */
export class RunError extends Error {}

/** Where a tool reads input named on its command line; `-` is stdin. */
export interface ToolIO {
  readInput(pathOrDash: string): string;
}

export const NO_INPUT: ToolIO = {
  readInput(pathOrDash) {
    throw new RunError(`cannot read ${pathOrDash === '-' ? 'stdin' : pathOrDash}: no input given`);
  },
};

export type Tool = (args: string[], state: EmulatorState, io: ToolIO) => string;

export const OUTPUT_FLAGS = { format: 'value', output: 'value' } as const;

/** The yaml module is loaded only when needed, so most calls stay cheap. */
export function yamlModule(): typeof import('yaml') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('yaml') as typeof import('yaml');
}

/** Juju's `--format` choices: json, yaml, and smart (plain text for scalars, yaml otherwise). */
export function format(value: unknown, fmt: string | boolean | undefined): string {
  const name = typeof fmt === 'string' ? fmt : 'smart';
  if (name === 'json') return `${JSON.stringify(value ?? null)}\n`;
  if (value === null || value === undefined) return '';
  if (name === 'yaml') return yamlModule().stringify(value);
  if (name !== 'smart') throw new UsageError(`unknown format "${name}"`);
  if (typeof value === 'string') return value === '' ? '' : `${value}\n`;
  if (typeof value === 'boolean') return value ? 'True\n' : 'False\n';
  return yamlModule().stringify(value);
}

export function noExtra(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`unrecognized args: [${positionals.map((p) => JSON.stringify(p)).join(' ')}]`);
}
