/**
 * The device config keys firmware_update reads, for every device type: upstream's MAAS keys (the
 * HPE route asks MAAS for the BMC's credentials) and ours. Unknown keys pass through each type's
 * own schema, so they are checked here, when the phase runs.
 */
import { z } from 'zod';
import { describeIssues, type DeviceConfig } from '../config';
import { ConnectorError } from '../errors';
import { profileName, systemId } from '../devices/maas2/config';
import { patternString } from '../validate';

/** The version that means the newest firmware: the only one upstream's LVFS route takes. */
export const LATEST = 'latest';

/** Upstream's HPE firmware repository (HPE's Software Delivery Repository). */
export const HPE_REPO_URL = 'https://downloads.linux.hpe.com/SDR/repo/';

export const firmwareConfigSchema = z
  .object({
    /** Upstream's: the MAAS profile and machine whose power parameters hold the BMC's address and credentials (HPE route). */
    maas_user: profileName.optional(),
    node_id: systemId.optional(),
    /** Ours: how long the device may take to reboot after the update; upstream's waits by default (LVFS 900 s, HPE 1800 s). */
    firmware_reboot_timeout_seconds: z.number().positive().optional(),
    /** Ours: the pause between polls of a rebooting device or BMC (upstream's: 10 s). */
    firmware_poll_seconds: z.number().positive().default(10),
    /** Ours: where HPE's firmware packs are (upstream's fixed address by default), ending in "/". */
    firmware_hpe_repo_url: patternString(/^https?:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~-]+)*\/$/, 'an http(s) URL ending in "/"').default(HPE_REPO_URL),
  })
  .passthrough();
export type FirmwareConfig = z.output<typeof firmwareConfigSchema>;

/** The firmware keys of the device config; a bad one fails the phase, naming it. */
export function firmwareConfig(device: DeviceConfig): FirmwareConfig {
  const parsed = firmwareConfigSchema.safeParse(device);
  if (!parsed.success) throw new ConnectorError(`bad device config: ${describeIssues('default.yaml', parsed.error)}`);
  return parsed.data;
}
