/** dragonboard's keys: upstream's boot selector scripts, the SD card and its writable partition, and the master image's user. */
import { z } from 'zod';
import { deviceConfigSchema, type DeviceConfig } from '../../config';
import { sshUserSchema } from '../../validate';
import { devicePathSchema, masterBootKeys, scriptSchema, timingKeys } from '../sshboot/config';
import { serialConsoleKeys } from '../../serial';

export const dragonboardConfigSchema = deviceConfigSchema.extend({
  reboot_script: scriptSchema,
  /** Run on this host (split on spaces, no shell, 60 s each): the next boot starts the master image (USB stick) or the test image (SD card). */
  select_master_script: scriptSchema,
  select_test_script: scriptSchema,
  /** The SD card, as the master image sees it: the image is written here. */
  test_device: devicePathSchema,
  /** The test image's writable partition, where the cloud-init seed goes. */
  snappy_writable_partition: devicePathSchema,
  ...serialConsoleKeys,
  /** Ours: the master image's login (upstream's is always linaro). */
  master_username: sshUserSchema.default('linaro' as z.input<typeof sshUserSchema>),
  /** Upstream gives the master image 300 s to boot. */
  ...masterBootKeys(300),
  /** The test image: 600 s to boot, looks every 10 s, 60 s settling after the reboot and after provisioning. */
  ...timingKeys({ boot: 600, poll: 10, settle: 60 }),
});
export type DragonboardConfig = z.output<typeof dragonboardConfigSchema>;

export function dragonboardConfig(device: DeviceConfig): DragonboardConfig {
  return dragonboardConfigSchema.parse(device);
}
