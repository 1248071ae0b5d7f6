/**
 * Keys the boards that boot over SSH share (cm3, dragonboard, netboot, oemrecovery): the
 * operator's scripts, the serial console, the block device an image is written to, how long a
 * boot may take, and the job's test user and password.
 */
import { z } from 'zod';
import { describeIssues, type JobFile } from '../../config';
import { JobError } from '../../errors';
import { patternString, type SshUser } from '../../validate';
import { oemScriptProvisionSchema } from '../oemscript/config';

/** A list of commands in default.yaml (reboot_script, select_master_script, ...); unset is none. */
export const scriptSchema = z.array(z.string().trim().min(1)).default([]);

/**
 * A device node on the host that writes the image (/dev/mmcblk1, /dev/sda2): it reaches a remote
 * shell (quoted), so only letters, digits and "._-/" under /dev, never "..".
 */
export const devicePathSchema = patternString(/^\/dev\/(?!.*\.\.)[A-Za-z0-9._/-]{1,64}$/, 'a device path under /dev (letters, digits, "._-/", no "..")');

/** Upstream's waits for one type; each is a key of ours so a lab (or a test) can change it. */
export interface BootTiming {
  /** How long the new system may take to answer. */
  boot: number;
  /** The pause between two looks at a booting device. */
  poll: number;
  /** The pause after a reboot or a flash before looking, and other fixed waits. */
  settle: number;
}

export function timingKeys(defaults: BootTiming) {
  return {
    boot_timeout_seconds: z.number().positive().default(defaults.boot),
    boot_poll_seconds: z.number().nonnegative().default(defaults.poll),
    boot_settle_seconds: z.number().nonnegative().default(defaults.settle),
  };
}

/** Ours: how long the image that writes the test image (dragonboard's and netboot's master image) may take to boot. */
export function masterBootKeys(seconds: number) {
  return { master_boot_timeout_seconds: z.number().positive().default(seconds) };
}

export interface Credentials {
  user: SshUser;
  password: string;
}

/** The password reaches sshpass through its environment: anything but NUL and line breaks, which no prompt takes. */
const passwordSchema = z.string().regex(/^[^\0\r\n]{1,256}$/, 'not a usable password (1 to 256 characters, no NUL or line break)');
const testDataSchema = z.object({ test_password: passwordSchema.optional() }).passthrough();

/** test_data's test_password, else the type's default (upstream's). A bad one fails the job. */
export function testPassword(job: JobFile, fallback: string): string {
  const parsed = testDataSchema.safeParse(job.test_data ?? {});
  // The message names the key, never the value: a password stays out of the job's output.
  if (!parsed.success) throw new JobError(describeIssues('testflinger.json', parsed.error, ['test_data']));
  return parsed.data.test_password ?? fallback;
}

/** provision_data.url, an http(s) image URL as the OEM types take it; a job without one fails. */
export function imageUrl(job: JobFile): string {
  const parsed = oemScriptProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data (an image "url" is required): ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  return parsed.data.url;
}
