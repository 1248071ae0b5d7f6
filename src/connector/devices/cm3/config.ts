/** cm3's keys: upstream's control host (a sidecar that writes the module's eMMC over USB), its user, and the eMMC's device. */
import { z } from 'zod';
import { deviceConfigSchema, type DeviceConfig } from '../../config';
import { sshHostSchema, sshUserSchema } from '../../validate';
import { devicePathSchema, scriptSchema, timingKeys } from '../sshboot/config';
import { serialConsoleKeys } from '../../serial';

export const cm3ConfigSchema = deviceConfigSchema.extend({
  /** The sidecar: the agents' key must be accepted there; its port comes from the ssh config. */
  control_host: sshHostSchema,
  control_user: sshUserSchema.default('ubuntu' as z.input<typeof sshUserSchema>),
  /** The module's eMMC as the control host sees it once it is in USB boot mode (/dev/sda). */
  test_device: devicePathSchema,
  reboot_script: scriptSchema,
  ...serialConsoleKeys,
  /** Upstream: 600 s for the test image, a look every 10 s; 5 s pauses around the GPIO and power steps. */
  ...timingKeys({ boot: 600, poll: 10, settle: 5 }),
});
export type Cm3Config = z.output<typeof cm3ConfigSchema>;

export function cm3Config(device: DeviceConfig): Cm3Config {
  return cm3ConfigSchema.parse(device);
}
