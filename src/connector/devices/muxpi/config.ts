/**
 * muxpi's keys: default.yaml as upstream's muxpi connector reads it (the control host, its user,
 * the card's block device, the SD-mux commands, the scripts), and the job's provision_data.
 */
import { z } from 'zod';
import { deviceConfigSchema, describeIssues, type DeviceConfig, type JobFile } from '../../config';
import { JobError, UsageError } from '../../errors';
import { patternString, sshUserSchema } from '../../validate';
import { controlHostKeys } from '../controlhost/config';

/** Upstream's switch commands when default.yaml names none: the MuxPi's `stm`. */
export const DEFAULT_SWITCH_LOCAL_CMD = 'stm -ts';
export const DEFAULT_SWITCH_DEVICE_CMD = 'stm -dut';

/** A block device path on the control host: absolute, plain characters, no `..` (it goes into dd's `of=`). */
export const blockDevicePath = patternString(/^(?!.*\/\.\.?(\/|$))\/[A-Za-z0-9_./:+-]{1,255}$/, 'a block device path (absolute; letters, digits and "_./:+-"; no ".." step)');

/** A command run on the control host's shell, as the operator wrote it: one line. */
const controlCommand = z.string().trim().min(1).regex(/^[^\n\r\0]*$/, 'one line');
const commandList = z.array(controlCommand);

export const muxpiConfigSchema = deviceConfigSchema.extend({
  ...controlHostKeys,
  /** Upstream mounts the card's partitions under /mnt/<agent_name>: it is required. */
  agent_name: patternString(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'an agent name (letters, digits, "_", ".", "-")'),
  /** The user the agents' key logs in as on the control host. */
  control_user: sshUserSchema.default('ubuntu' as z.output<typeof sshUserSchema>),
  /** The card as the control host sees it when the mux connects it there (unless the job names a `media`). */
  test_device: blockDevicePath.optional(),
  control_switch_local_cmd: controlCommand.default(DEFAULT_SWITCH_LOCAL_CMD),
  control_switch_device_cmd: controlCommand.default(DEFAULT_SWITCH_DEVICE_CMD),
  /** Run on the control host after the image is written, the card's partitions mounted; failures are noted only. */
  post_provision_script: commandList.default([]),
  /** The hard reset: run on this host, each split on spaces, no shell. */
  reboot_script: z.array(z.string().trim().min(1)).default([]),
  control_host_reboot_script: z.array(z.string().trim().min(1)).optional(),
  /** How long the control host may take to come back after control_host_reboot_script. */
  control_host_reboot_timeout: z.number().nonnegative().default(120),
  /** Ours: where mount points are made on the control host (upstream: /mnt, so /mnt/<agent_name>/<label>). */
  muxpi_mount_dir: blockDevicePath.default('/mnt'),
  /** Ours: how long the test image may take to boot (upstream: 1200 s). */
  muxpi_boot_wait_seconds: z.number().positive().default(1200),
  /** Ours: the pause before each boot check (upstream: 10 s). */
  muxpi_boot_poll_seconds: z.number().positive().default(10),
  /** Ours: how long an unreachable control host is retried, every 5 s (upstream: 60 s). */
  muxpi_control_retry_seconds: z.number().nonnegative().default(60),
  /** Ours: the longest a download may stay silent (upstream: 1200 s). */
  muxpi_download_timeout_seconds: z.number().positive().default(1200),
  /** Ours: the longest writing the image may take (upstream: 1800 s for a URL's image, 1200 s for an attachment). */
  muxpi_flash_timeout_seconds: z.number().positive().optional(),
});
export type MuxpiConfig = z.output<typeof muxpiConfigSchema>;

export function muxpiConfig(device: DeviceConfig): MuxpiConfig {
  const parsed = muxpiConfigSchema.safeParse(device);
  if (!parsed.success) throw new UsageError(describeIssues('default.yaml', parsed.error));
  return parsed.data;
}

const httpUrl = (what: string) =>
  z
    .string()
    .max(2048)
    .regex(/^https?:\/\/[^\s"'`\\]+$/, `${what}: an http(s) URL without spaces, quotes or backslashes`)
    .refine((value) => URL.canParse(value), `${what}: a well-formed URL`);

/** An attachment's name: one file name in attachments/provision/, never a path. */
const attachmentName = patternString(/^(?!\.\.?$)[^/\0]{1,255}$/, 'a file name in attachments/provision/ (no "/")');

export const muxpiProvisionSchema = z
  .object({
    url: httpUrl('the image').optional(),
    use_attachment: attachmentName.optional(),
    media: z.enum(['sd', 'usb']).optional(),
    create_user: z.boolean().default(true),
    /** `$DEVICE_IP` in it is replaced by device_ip. */
    boot_check_url: httpUrl('the boot check').optional(),
  })
  .passthrough()
  .refine((data) => data.url !== undefined || data.use_attachment !== undefined, {
    message: 'provide "url" (where to download the image from) or "use_attachment" (which attachment is the image)',
  });
export type MuxpiProvision = z.output<typeof muxpiProvisionSchema>;

/** A bad provision_data fails the job before the control host hears anything. */
export function muxpiProvision(job: JobFile): MuxpiProvision {
  const parsed = muxpiProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data: ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  return parsed.data;
}

/** The words upstream looks for in control_switch_local_cmd: a mux CLI that drives these devices. */
const MUX_DEVICES = ['sdwire', 'typecmux'];

/** Whitespace-split words, as the mux CLI's command is simple words (no quoting is supported in it). */
function words(command: string): string[] {
  return command.trim().split(/\s+/).filter(Boolean);
}

/** Whether the switch command drives a mux CLI (`... sdwire ...`/`... typecmux ...`): then no SDWire reboot first. */
export function usesMuxCli(config: MuxpiConfig): boolean {
  return words(config.control_switch_local_cmd).some((word) => MUX_DEVICES.includes(word));
}

/** The mux CLI itself: the words before `sdwire`/`typecmux` (`sudo muxctl sdwire set TS` -> `sudo muxctl`). */
export function muxCliCommand(config: MuxpiConfig): string {
  const all = words(config.control_switch_local_cmd);
  const at = all.findIndex((word) => MUX_DEVICES.includes(word));
  if (at <= 0) {
    throw new UsageError('default.yaml: control_switch_local_cmd: must be a mux CLI command followed by "sdwire" or "typecmux" when the job\'s provision_data names a "media"');
  }
  return all.slice(0, at).join(' ');
}

/** The card's block device when the job names no medium: test_device is then required. */
export function testDevice(config: MuxpiConfig): string {
  if (config.test_device === undefined) throw new UsageError('default.yaml: test_device: Required (the card\'s block device on the control host), unless the job names a provision_data.media');
  return config.test_device;
}
