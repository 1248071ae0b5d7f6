/**
 * Steps that device types share: run a local command with a time limit, run or copy something
 * on the device over SSH, wait for the device to answer, and give up as a recovery failure.
 * Every word a step puts in a remote command passes through `shellWords`, so none is ever
 * interpolated unquoted into the device's shell.
 */
import { spawn } from 'node:child_process';
import { ConnectorError, RecoveryError } from './errors';
import { describeTarget, type PhaseContext } from './phases';
import { sshRun, type SshResult } from './ssh';
import { quoted } from '../common/text';
import type { SshUser } from './validate';

export interface CommandResult {
  exitCode: number;
  /** stdout and stderr, interleaved as they came. */
  output: string;
  /** stdout alone, for commands whose output is parsed (JSON). */
  stdout: string;
  timedOut: boolean;
}

/** Runs a program (no shell) and collects its output; one still running after `timeoutMs` is killed. */
export function runCommand(argv: readonly string[], options: { timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<CommandResult> {
  const [program, ...args] = argv;
  if (program === undefined) throw new Error('runCommand needs a program');
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let output = '';
    let stdout = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.stdout.on('data', (d: Buffer) => ((output += d.toString()), (stdout += d.toString())));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ exitCode: 127, output: error.message, stdout: '', timedOut: false });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ exitCode: timedOut ? 124 : (code ?? 1), output, stdout, timedOut });
    });
  });
}

/** Words for a POSIX shell, each single-quoted: the shell reads every one as literal text. */
export function shellWords(words: readonly string[]): string {
  return words.map((word) => `'${word.replace(/'/g, `'\\''`)}'`).join(' ');
}

/** Runs `words` on the device as `user` (quoted word by word); fails with the output when it exits non-zero. */
export async function runOnDevice(ctx: PhaseContext, user: SshUser, words: readonly string[], options: { timeoutMs?: number; input?: string } = {}): Promise<SshResult> {
  const result = await sshRun(ctx.device, user, shellWords(words), options.input, options.timeoutMs);
  if (result.exitCode !== 0) {
    throw new ConnectorError(`${quoted(words.join(' '))} on ${describeTarget(ctx, user)} failed (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
  }
  return result;
}

/** Writes `content` to `remotePath` on the device (`ssh cat >`; no scp needed on either side). */
export async function copyToDevice(ctx: PhaseContext, user: SshUser, content: string, remotePath: string, mode = '0644'): Promise<void> {
  const command = `cat > ${shellWords([remotePath])} && chmod ${shellWords([mode, remotePath])}`;
  const result = await sshRun(ctx.device, user, command, content, 5 * 60_000);
  if (result.exitCode !== 0) throw new ConnectorError(`copying ${quoted(remotePath)} to ${describeTarget(ctx, user)} failed: ${quoted(result.output.trim())}`);
}

export interface SshWait {
  /** How long to keep trying. */
  seconds: number;
  /** Pause between attempts. */
  everySeconds?: number;
  /** The command that must succeed; `true` by default. */
  check?: string;
}

/** Waits (bounded) until the device answers over SSH as `user`; fails saying what it last answered. */
export async function waitForSsh(ctx: PhaseContext, user: SshUser, wait: SshWait = { seconds: ctx.device.provision_ssh_wait }): Promise<void> {
  const deadline = Date.now() + wait.seconds * 1000;
  const pauseMs = (wait.everySeconds ?? 5) * 1000;
  let last = '';
  for (let attempt = 1; ; attempt++) {
    const result = await sshRun(ctx.device, user, wait.check ?? 'true', undefined, 60_000);
    if (result.exitCode === 0) {
      ctx.print(`${describeTarget(ctx, user)} answers over SSH`);
      return;
    }
    last = result.output.trim();
    if (Date.now() >= deadline) break;
    ctx.print(`attempt ${attempt}: ${describeTarget(ctx, user)} not answering yet (${last ? quoted(last) : `exit ${result.exitCode}`})`);
    await ctx.sleep(Math.min(pauseMs, Math.max(0, deadline - Date.now())));
  }
  throw new ConnectorError(`${describeTarget(ctx, user)} did not answer over SSH within ${wait.seconds}s: ${quoted(last)}`);
}

/** The device could not be brought back: the agent will take it offline (exit 46). */
export function recoveryFailed(message: string, cause?: unknown): RecoveryError {
  return new RecoveryError(message, cause === undefined ? undefined : { cause });
}

/** Polls `read` until `done` says so, at most `seconds`; returns the last value read and whether it was done. */
export async function pollUntil<T>(ctx: PhaseContext, read: () => Promise<T>, done: (value: T) => boolean, timing: { seconds: number; everySeconds: number }): Promise<{ value: T; done: boolean }> {
  const deadline = Date.now() + timing.seconds * 1000;
  for (;;) {
    const value = await read();
    if (done(value)) return { value, done: true };
    if (Date.now() >= deadline) return { value, done: false };
    await ctx.sleep(Math.min(timing.everySeconds * 1000, Math.max(0, deadline - Date.now())));
  }
}
