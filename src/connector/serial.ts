/**
 * The device's serial console, logged to <phase>-serial.log in the run directory while a phase
 * runs (the agent streams that file to the server), as upstream's SerialLogger: a TCP connection
 * to serial_host:serial_port (a console server), reopened 30 s after it fails or closes.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { z } from 'zod';
import { serialLogFile } from '../common/contract';
import { openRegularFile } from '../common/fsutil';
import { runTest, type PhaseContext, type PhaseFn } from './phases';
import { describeIssues } from './config';
import { UsageError } from './errors';
import { sshHostSchema } from './validate';

const RECONNECT_MS = 30_000;

/** The default.yaml keys that name the console server, as upstream's (types add them to their schema). */
export const serialConsoleKeys = {
  serial_host: sshHostSchema.optional(),
  serial_port: z.number().int().min(1).max(65535).optional(),
};

export interface SerialLog {
  stop(): void;
}

/** Starts logging when both host and port are set; otherwise a logger that does nothing. */
export function startSerialLog(print: (line: string) => void, runDir: string, phase: string, host: string | undefined, port: number | undefined): SerialLog {
  if (!host || !port) return { stop: () => undefined };
  // The run directory is the job's: a link or a FIFO left there is refused, never followed or waited on.
  const { fd } = openRegularFile(path.join(runDir, serialLogFile(phase)), fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644);
  let socket: net.Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let warned = false;
  const connect = (): void => {
    if (stopped) return;
    const s = net.connect({ host, port });
    socket = s;
    s.on('connect', () => print('Successfully connected to serial logging server'));
    s.on('data', (data: Buffer) => fs.writeSync(fd, data));
    s.on('error', () => {
      if (!warned) print('Error connecting to serial logging server. Retrying in the background...');
      warned = true;
    });
    s.on('close', () => {
      if (stopped) return;
      timer = setTimeout(connect, RECONNECT_MS);
      timer.unref();
    });
  };
  connect();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      socket?.destroy();
      fs.closeSync(fd);
    },
  };
}

const serialConsoleSchema = z.object(serialConsoleKeys).passthrough();

/**
 * Runs `work` with the device's serial console logged to <phase>-serial.log meanwhile, when
 * default.yaml names a console server (its keys are checked here too, for types without a schema).
 */
export async function logSerialWhile<T>(ctx: PhaseContext, phase: string, work: () => Promise<T>): Promise<T> {
  const parsed = serialConsoleSchema.safeParse(ctx.device);
  if (!parsed.success) throw new UsageError(describeIssues('default.yaml', parsed.error));
  const serial = startSerialLog(ctx.print, ctx.runDir, phase, parsed.data.serial_host, parsed.data.serial_port);
  try {
    return await work();
  } finally {
    serial.stop();
  }
}

/** A phase with the serial console logged while it runs (logSerialWhile). */
export function withSerialLog(phase: string, run: PhaseFn): PhaseFn {
  return (ctx: PhaseContext) => logSerialWhile(ctx, phase, () => run(ctx));
}

/**
 * Upstream's test phase, the default of every type: the test commands, with the serial console
 * logged to test-serial.log meanwhile.
 */
export const testWithSerialLog: PhaseFn = withSerialLog('test', runTest);
