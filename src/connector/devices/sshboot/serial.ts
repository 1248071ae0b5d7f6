/** Upstream's SerialLogger around a provision: provision-serial.log while `work` runs, when serial_host and serial_port are set. */
import type { PhaseContext } from '../../phases';
import { startSerialLog } from '../../serial';

export async function withSerialLog<T>(ctx: PhaseContext, config: { serial_host?: string | undefined; serial_port?: number | undefined }, work: () => Promise<T>): Promise<T> {
  const serial = startSerialLog(ctx.print, ctx.runDir, 'provision', config.serial_host, config.serial_port);
  try {
    return await work();
  } finally {
    serial.stop();
  }
}
