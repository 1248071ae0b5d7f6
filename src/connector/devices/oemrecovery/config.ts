/** oemrecovery's keys: upstream's recovery_cmds and reboot_script, and the wait for the recovered system. */
import { z } from 'zod';
import { deviceConfigSchema, type DeviceConfig } from '../../config';
import { scriptSchema, timingKeys } from '../sshboot/config';

export const oemRecoveryConfigSchema = deviceConfigSchema.extend({
  /** Run on the device over SSH, one after another, 600 s each: they start its recovery. */
  recovery_cmds: scriptSchema,
  reboot_script: scriptSchema,
  /** Upstream waits up to an hour for the recovered system, looking every 90 s. */
  ...timingKeys({ boot: 3600, poll: 90, settle: 0 }),
});
export type OemRecoveryConfig = z.output<typeof oemRecoveryConfigSchema>;

export function oemRecoveryConfig(device: DeviceConfig): OemRecoveryConfig {
  return oemRecoveryConfigSchema.parse(device);
}
