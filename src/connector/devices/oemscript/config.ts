/** The OEM script family's keys: default.yaml as upstream's (device_ip, reboot_script), and the image URL. */
import { z } from 'zod';
import { deviceConfigSchema, describeIssues, type DeviceConfig, type JobFile } from '../../config';
import { JobError } from '../../errors';
import { serialConsoleKeys } from '../../serial';
import { patternString } from '../../validate';

export const oemScriptConfigSchema = deviceConfigSchema.extend({
  /** The device's serial console (a TCP console server): upstream logs it during test only. */
  ...serialConsoleKeys,
  /** Commands run on this host, split on spaces (no shell), when the device cannot be reached: a power cycle. */
  reboot_script: z.array(z.string().trim().min(1)).default([]),
  /** Our extensions. How long a reboot, or a restore and its installer, may take (upstream: 90 minutes). */
  oem_boot_wait_seconds: z.number().positive().default(5400),
  /** How long the device may take to go down after being told to reboot. */
  oem_shutdown_wait_seconds: z.number().positive().default(300),
  /** The pause between looks at a device that is rebooting or installing. */
  oem_poll_seconds: z.number().positive().default(30),
});
export type OemScriptConfig = z.output<typeof oemScriptConfigSchema>;

/**
 * The image's URL: it reaches the device's shell (quoted) and its downloader, so only plain
 * http(s) URLs: a host, an optional port, and a path and query without quotes, spaces or `$()`.
 */
const imageUrl = patternString(/^https?:\/\/[A-Za-z0-9.-]{1,253}(:\d{1,5})?(\/[A-Za-z0-9._~%+=:@&\/-]*)?(\?[A-Za-z0-9._~%+=:@&\/?-]*)?$/, 'an http(s) URL (host, port, path and query of letters, digits and "._~%+=:@&/-?")');

export const oemScriptProvisionSchema = z.object({ url: imageUrl }).passthrough();
export type OemScriptProvision = z.output<typeof oemScriptProvisionSchema>;

export function oemScriptConfig(device: DeviceConfig): OemScriptConfig {
  return oemScriptConfigSchema.parse(device);
}

/** A job without an image URL, or a bad one, fails; the device stays online. */
export function oemScriptProvision(job: JobFile): OemScriptProvision {
  const parsed = oemScriptProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data (an image "url" is required): ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  return parsed.data;
}
