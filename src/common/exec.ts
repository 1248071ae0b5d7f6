/** The one way the charm runs a program: it fails loudly with a typed error naming the command. */
import execa from 'execa';

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stdout: string,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    const detail = (stderr || stdout).trim().split('\n').slice(-3).join(' | ');
    super(`${command} failed (exit ${exitCode ?? 'none'})${detail ? `: ${detail}` : ''}`, options);
  }
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string;
  /** Exit codes that still count as success (e.g. `id -u` exits 1 for a missing user). */
  okExitCodes?: readonly number[];
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export type Runner = (file: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

export const runCommand: Runner = async (file, args, options = {}) => {
  const result = await execa(file, [...args], {
    cwd: options.cwd,
    env: options.env,
    input: options.input,
    reject: false,
    stdin: options.input === undefined ? 'ignore' : 'pipe',
    timeout: options.timeoutMs,
  });
  const ok = [0, ...(options.okExitCodes ?? [])];
  if (result.failed && !ok.includes(result.exitCode)) {
    throw new CommandError([file, ...args].join(' '), result.exitCode, result.stdout, result.stderr || failureText(result), {
      cause: result,
    });
  }
  return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode };
};

/** execa's own description of a failure that left no stderr (not found, killed, timed out). */
export function failureText(result: object): string {
  return 'shortMessage' in result ? String(result.shortMessage) : '';
}
