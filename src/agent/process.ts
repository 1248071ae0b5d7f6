/**
 * One phase command: `/bin/sh -c` started inside its containment scope (a cgroup or a PID
 * namespace, see containment.ts) and, for the test phase, in the sandbox; stdout and stderr
 * merged, with the timeouts that apply to it. Stopping signals every process of the scope; when
 * the phase ends, whatever it left is killed and named in the result.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Clock } from './clock';
import { parseReaperReport, processGroupScope, reaperArgv, type LeftoverProcess, type PhaseScope } from './containment';

export type StopReason = 'timeout' | 'output-timeout' | 'cancelled' | 'shutdown';

export interface PhaseProcessOptions {
  command: string;
  cwd: string;
  env: Record<string, string>;
  onOutput: (text: string) => void;
  clock: Clock;
  /** Where the phase's processes live; without one, its process group. */
  scope?: PhaseScope;
  /** The sandbox's argv (bwrap ... --), run inside the scope; it gives the command a PID namespace. */
  sandbox?: string[];
  /** Written to a pipe on SANDBOX_ARGS_FD, which the sandbox's `--args` reads (kept out of argv). */
  sandboxArgs?: Buffer;
  /** Started with a pipe on SERVER_TOKEN_FD (the phase's read end); returns what stops it (see tokenfeed.ts). */
  tokenFeed?: (pipe: Writable) => () => void;
  /** Kill when this many ms have passed. */
  timeoutMs?: number;
  /** Kill when nothing was printed for this many ms. */
  outputTimeoutMs?: number;
  /** Kill when this fires; `reason()` says why. */
  stop?: { signal: AbortSignal; reason: () => StopReason };
  /** Told the pid (= process group) once the command runs, so it can be found after a crash. */
  onSpawn?: (pid: number) => void;
}

export interface PhaseProcessResult {
  exitCode: number;
  stoppedBy?: StopReason;
  /** Processes still running when the phase ended, killed then. */
  leftovers: LeftoverProcess[];
}

/** The descriptor `sandboxArgs` arrive on: after stdin, stdout, stderr and the reaper's fd 3. */
export const SANDBOX_ARGS_FD = 4;
/** The descriptor the agent's access token arrives on, for the phases that get it (tokenfeed.ts). */
export const SERVER_TOKEN_FD = 5;

/** Grace between SIGTERM and SIGKILL for a phase being stopped. */
const KILL_GRACE_MS = 5000;
/** How long to wait for output pipes held open by leftover children once the shell exited. */
const DRAIN_MS = 2000;

export function phaseArgv(command: string, scope: PhaseScope, sandbox: readonly string[] = []): string[] {
  return [...scope.prefix, ...sandbox, ...(scope.reportsOnFd3 ? reaperArgv(command) : ['/bin/sh', '-c', command])];
}

/** Descriptors 0-5 of the phase; trailing unused ones are not passed at all. */
function phaseStdio(reaper: boolean, sandboxArgs: boolean, tokenFeed: boolean): ('ignore' | 'pipe')[] {
  const stdio: ('ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe', reaper ? 'pipe' : 'ignore', sandboxArgs ? 'pipe' : 'ignore', tokenFeed ? 'pipe' : 'ignore'];
  while (stdio.length > 3 && stdio[stdio.length - 1] === 'ignore') stdio.pop();
  return stdio;
}

export function runPhaseProcess(options: PhaseProcessOptions): Promise<PhaseProcessResult> {
  return new Promise((resolve) => {
    const scope = options.scope ?? processGroupScope();
    const [file, ...args] = phaseArgv(options.command, scope, options.sandbox);
    const child = spawn(file as string, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: phaseStdio(scope.reportsOnFd3, options.sandboxArgs !== undefined, options.tokenFeed !== undefined),
    });
    const tokenPipe = (child.stdio as readonly unknown[])[SERVER_TOKEN_FD] as Writable | null | undefined;
    const stopTokenFeed = options.tokenFeed && tokenPipe ? options.tokenFeed(tokenPipe) : () => undefined;
    const argsPipe = child.stdio[SANDBOX_ARGS_FD];
    if (options.sandboxArgs && argsPipe && 'end' in argsPipe) {
      argsPipe.on('error', () => undefined); // the sandbox failed before reading: its exit says why
      argsPipe.end(options.sandboxArgs);
    }
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    let stoppedBy: StopReason | undefined;
    let lastOutput = options.clock.now();
    let exitCode: number | undefined;
    let settled = false;
    let report = '';
    const timers: NodeJS.Timeout[] = [];

    const signalAll = (signal: NodeJS.Signals) => {
      if (child.pid !== undefined) scope.signal(child.pid, signal);
    };
    const stop = (reason: StopReason) => {
      if (stoppedBy || exitCode !== undefined || child.pid === undefined) return;
      stoppedBy = reason;
      signalAll('SIGTERM');
      timers.push(setTimeout(() => signalAll('SIGKILL'), KILL_GRACE_MS));
    };
    // Once the command is over (or its pipes were held too long): end the scope, then answer.
    const finish = async () => {
      if (settled) return;
      settled = true;
      stopTokenFeed();
      for (const t of timers) clearTimeout(t);
      options.stop?.signal.removeEventListener('abort', onAbort);
      const found = child.pid === undefined ? [] : await scope.end(child.pid);
      const limitNote = scope.limitNote?.();
      if (limitNote) options.onOutput(`\n${limitNote}\n`);
      const leftovers = [...parseReaperReport(report), ...found];
      resolve({ exitCode: exitCode ?? 1, leftovers, ...(stoppedBy ? { stoppedBy } : {}) });
    };
    const onAbort = () => stop(options.stop?.reason() ?? 'shutdown');

    for (const stream of [child.stdout, child.stderr]) {
      const decoder = new StringDecoder('utf8');
      stream?.on('data', (chunk: Buffer) => {
        lastOutput = options.clock.now();
        const text = decoder.write(chunk);
        scope.observe?.(text);
        options.onOutput(text);
      });
      stream?.on('end', () => {
        const rest = decoder.end();
        if (rest) options.onOutput(rest);
      });
    }
    child.stdio[3]?.on('data', (chunk: Buffer) => {
      // Bounded: the report names at most a few thousand processes.
      if (report.length < 256 * 1024) report += chunk.toString('utf8');
    });
    if (options.stop) {
      if (options.stop.signal.aborted) onAbort();
      else options.stop.signal.addEventListener('abort', onAbort, { once: true });
    }
    if (options.timeoutMs !== undefined) timers.push(setTimeout(() => stop('timeout'), options.timeoutMs));
    if (options.outputTimeoutMs !== undefined) {
      const limit = options.outputTimeoutMs;
      const check = () => {
        const silent = options.clock.now() - lastOutput;
        if (silent >= limit) stop('output-timeout');
        else timers.push(setTimeout(check, limit - silent));
      };
      timers.push(setTimeout(check, limit));
    }
    child.on('error', (error) => {
      options.onOutput(`cannot run phase command: ${error.message}\n`);
      exitCode = 127;
      void finish();
    });
    child.on('exit', (code, signal) => {
      exitCode = code ?? 128 + (signal ? osSignalNumber(signal) : 0);
      // Leftover children may hold the pipes open; give them a moment, then end the scope.
      timers.push(setTimeout(() => void finish(), DRAIN_MS));
    });
    child.on('close', () => void finish());
  });
}

function osSignalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal] ?? 0;
}
