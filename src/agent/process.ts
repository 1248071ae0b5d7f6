/**
 * One phase command: `/bin/sh -c` in its own process group, stdout and stderr merged, with the
 * timeouts that apply to it. Stopping kills the whole group, children included.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import type { Clock } from './clock';

export type StopReason = 'timeout' | 'output-timeout' | 'cancelled' | 'shutdown';

export interface PhaseProcessOptions {
  command: string;
  cwd: string;
  env: Record<string, string>;
  onOutput: (text: string) => void;
  clock: Clock;
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
}

/** Grace between SIGTERM and SIGKILL for a phase being stopped. */
const KILL_GRACE_MS = 5000;
/** How long to wait for output pipes held open by leftover children once the shell exited. */
const DRAIN_MS = 2000;

export function killProcessGroup(pid: number): void {
  killGroup(pid, 'SIGKILL');
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

export function runPhaseProcess(options: PhaseProcessOptions): Promise<PhaseProcessResult> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', options.command], {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    let stoppedBy: StopReason | undefined;
    let lastOutput = options.clock.now();
    let exitCode: number | undefined;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];

    const stop = (reason: StopReason) => {
      if (stoppedBy || exitCode !== undefined || child.pid === undefined) return;
      stoppedBy = reason;
      killGroup(child.pid, 'SIGTERM');
      timers.push(setTimeout(() => child.pid && killGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS));
    };
    const finish = () => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      options.stop?.signal.removeEventListener('abort', onAbort);
      resolve({ exitCode: exitCode ?? 1, ...(stoppedBy ? { stoppedBy } : {}) });
    };
    const onAbort = () => stop(options.stop?.reason() ?? 'shutdown');

    for (const stream of [child.stdout, child.stderr]) {
      const decoder = new StringDecoder('utf8');
      stream.on('data', (chunk: Buffer) => {
        lastOutput = options.clock.now();
        options.onOutput(decoder.write(chunk));
      });
      stream.on('end', () => {
        const rest = decoder.end();
        if (rest) options.onOutput(rest);
      });
    }
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
      finish();
    });
    child.on('exit', (code, signal) => {
      exitCode = code ?? 128 + (signal ? osSignalNumber(signal) : 0);
      // Leftover children may hold the pipes open; give them a moment, then end the group.
      timers.push(
        setTimeout(() => {
          if (child.pid) killGroup(child.pid, 'SIGKILL');
          finish();
        }, DRAIN_MS),
      );
    });
    child.on('close', finish);
  });
}

function osSignalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal] ?? 0;
}
