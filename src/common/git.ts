/**
 * git, run as a plain command with an environment this project sets on purpose: no prompts,
 * no system or global config of the machine, credentials only through the environment.
 */
import { CommandError, runCommand, type Runner } from './exec';

const GIT_TIMEOUT_MS = 10 * 60_000;

export class GitError extends Error {
  override readonly name = 'GitError';
  constructor(
    message: string,
    /** git's own words (its last `fatal:` line), for the caller to phrase. */
    readonly reason: string,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** git's reason for a failure: its `fatal:` line when there is one, hints left out. */
function gitReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('hint:'));
  return lines.find((l) => l.startsWith('fatal:'))?.replace(/^fatal:\s*/, '') ?? lines[lines.length - 1] ?? 'unknown error';
}

/** Runs git; a failure becomes a GitError whose message never repeats the command line. */
export async function runGit(args: readonly string[], options: { env: Record<string, string>; cwd?: string; run?: Runner }): Promise<string> {
  const run = options.run ?? runCommand;
  try {
    const { stdout } = await run('git', args, { env: options.env, ...(options.cwd ? { cwd: options.cwd } : {}), timeoutMs: GIT_TIMEOUT_MS });
    return stdout;
  } catch (error) {
    const stderr = error instanceof CommandError ? error.stderr : String(error);
    const reason = gitReason(stderr);
    throw new GitError(`git ${args[0]} failed: ${reason}`, reason, stderr, { cause: error });
  }
}
