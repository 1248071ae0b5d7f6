/**
 * oem_autoinstall: OEM images from Ubuntu 24.04 on, installed by autoinstall. Upstream's connector
 * has two routes, taken in turn: with control_host_iso_url/control_host_iso_type, the control
 * host flashes an ISO onto the device (ProvisioningOEM); with url, the agent host runs OEM's
 * provision-image.sh against the device. This connector has the first.
 */
import { z } from 'zod';
import { deviceConfigSchema, describeIssues, type JobFile } from '../../config';
import { JobError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { controlHostKeys, jobCredentials } from './config';
import { STOCK_GRUB_CFG, STOCK_META_DATA, stockUserData } from './oem-stock-files';

export const OEM_METHOD = 'ProvisioningOEM';
export const ISO_TYPES = ['bootstrap', 'stock', 'bios', 'dummyefi'] as const;

/** The control host's keys apply only to the ISO route, so here they are all optional. */
export const oemAutoinstallConfigSchema = deviceConfigSchema.extend({
  ...(Object.fromEntries(Object.entries(controlHostKeys).map(([key, schema]) => [key, schema.optional()])) as { [K in keyof typeof controlHostKeys]: z.ZodOptional<(typeof controlHostKeys)[K]> }),
  /** Ours: the pause between looks at a device the url route waits for (upstream: 180 s, then 90 s). */
  oem_autoinstall_poll_seconds: z.number().positive().optional(),
});

export const oemAutoinstallProvisionSchema = z
  .object({
    control_host_iso_url: z.string().url().optional(),
    control_host_iso_type: z.string().optional(),
    update_user_data: z.boolean().default(false),
    url: z.string().optional(),
    provisioning_timeout: z.number().positive().nullish(),
  })
  .passthrough();
export type OemAutoinstallProvision = z.output<typeof oemAutoinstallProvisionSchema>;

export function oemAutoinstallProvision(job: JobFile): OemAutoinstallProvision {
  const parsed = oemAutoinstallProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data: ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  const data = parsed.data;
  if (usesIso(data)) {
    if (!data.control_host_iso_url) throw new JobError('An ISO URL (e.g. control_host_iso_url) is required in provision_data. Set the ISO image to be flashed to the DUT.');
    if (!data.control_host_iso_type) throw new JobError('An ISO type (e.g. control_host_iso_type) is required in provision_data. Based on the ISO type of the ISO URL.');
    if (!(ISO_TYPES as readonly string[]).includes(data.control_host_iso_type)) throw new JobError(`Unsupported ISO type: ${JSON.stringify(data.control_host_iso_type)}. Supported types: ${ISO_TYPES.join(', ')}`);
  }
  return data;
}

/** Upstream takes the ISO route when either of its keys is set. */
export function usesIso(data: OemAutoinstallProvision): boolean {
  return Boolean(data.control_host_iso_url || data.control_host_iso_type);
}

const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

/** A stock ISO brings no autoinstall files: the connector sends its own, as upstream's; other types, none. */
function autoinstallFiles(isoType: string | undefined): Record<'meta_data_b64' | 'user_data_b64' | 'grub_cfg_b64', string | null> {
  if (isoType !== 'stock') return { meta_data_b64: null, user_data_b64: null, grub_cfg_b64: null };
  return { meta_data_b64: base64(STOCK_META_DATA), user_data_b64: base64(stockUserData()), grub_cfg_b64: base64(STOCK_GRUB_CFG) };
}

/** The request's kwargs as upstream builds them. */
export function oemRequest(ctx: PhaseContext, data: OemAutoinstallProvision): Record<string, unknown> {
  const { username, password } = jobCredentials(ctx.job, { username: 'ubuntu', password: 'insecure' });
  return {
    control_host_iso_url: data.control_host_iso_url,
    control_host_iso_type: data.control_host_iso_type,
    update_user_data: data.update_user_data,
    device_ip: ctx.device.device_ip,
    username,
    password,
    reboot_script: ctx.device.reboot_script ?? null,
    ...autoinstallFiles(data.control_host_iso_type),
  };
}
