/** netboot's keys: upstream's boot selector scripts, post-flash commands and target disk, and the imager's port. */
import { z } from 'zod';
import { deviceConfigSchema, type DeviceConfig } from '../../config';
import { sshPortSchema, sshUserSchema } from '../../validate';
import { devicePathSchema, masterBootKeys, scriptSchema, timingKeys } from '../sshboot/config';
import { serialConsoleKeys } from '../../serial';

/** Upstream's imager listens here on the master image. */
export const UPSTREAM_IMAGER_PORT = 8989;

export const netbootConfigSchema = deviceConfigSchema.extend({
  /** Upstream's default user of a netbooted test image (its password too). */
  test_username: sshUserSchema.default('admin' as z.input<typeof sshUserSchema>),
  reboot_script: scriptSchema,
  /** Run on this host through a shell, 60 s each, as upstream's runcmd: select the image the next boot starts. */
  select_master_script: scriptSchema,
  select_test_script: scriptSchema,
  /** Run on this host through a shell, 60 s each, after the image is written. */
  post_flash_cmds: scriptSchema,
  /** The disk the imager writes; it goes into the imager's URL. */
  test_device: devicePathSchema,
  ...serialConsoleKeys,
  /** Ours: the imager's HTTP port on the master image. */
  netboot_imager_port: sshPortSchema.default(UPSTREAM_IMAGER_PORT),
  /** Upstream: 600 s for the master image; 900 s for the test image, looked at every 10 s after a 60 s pause. */
  ...masterBootKeys(600),
  ...timingKeys({ boot: 900, poll: 10, settle: 60 }),
});
export type NetbootConfig = z.output<typeof netbootConfigSchema>;

export function netbootConfig(device: DeviceConfig): NetbootConfig {
  return netbootConfigSchema.parse(device);
}
