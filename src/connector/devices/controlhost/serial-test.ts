/**
 * Upstream's test phase logs the device's serial console (serial_host, serial_port: a TCP
 * console server) to test-serial.log while the test commands run, for every device type that
 * keeps upstream's runtest: the control-host family and multi among them.
 */
import { z } from 'zod';
import { describeIssues } from '../../config';
import { UsageError } from '../../errors';
import { runTest, type PhaseFn } from '../../phases';
import { startSerialLog } from '../../serial';
import { sshHostSchema } from '../../validate';

export const serialConsoleKeys = {
  serial_host: sshHostSchema.optional(),
  serial_port: z.number().int().min(1).max(65535).optional(),
};
const serialConsoleSchema = z.object(serialConsoleKeys).passthrough();

/** runTest, with the serial console logged meanwhile when the device config names one. */
export const testWithSerialLog: PhaseFn = async (ctx) => {
  const parsed = serialConsoleSchema.safeParse(ctx.device);
  if (!parsed.success) throw new UsageError(describeIssues('default.yaml', parsed.error));
  const serial = startSerialLog(ctx.print, ctx.runDir, 'test', parsed.data.serial_host, parsed.data.serial_port);
  try {
    return await runTest(ctx);
  } finally {
    serial.stop();
  }
};
