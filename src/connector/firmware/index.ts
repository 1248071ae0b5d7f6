/**
 * firmware_update as upstream runs it, for every device type (upstream: a method of the base
 * connector): the job's `firmware_update_data` names the version (`latest`, or an HPE firmware
 * pack) and may set `ignore_failure`; the device says over SSH what it is (its DMI chassis vendor
 * and type), and that decides the route: LVFS (fwupd on the device, lvfs.ts) for HP, Dell and
 * Lenovo desktops, all-in-ones, mini PCs and rack servers; HPE servers through their BMC with
 * ilorest (hpe.ts), its address and credentials from MAAS's power parameters.
 */
import { z } from 'zod';
import { describeIssues } from '../config';
import { ConnectorError, JobError } from '../errors';
import { describeTarget, testUsername, type PhaseContext, type PhaseFn } from '../phases';
import { sshRun } from '../ssh';
import { shellWords, waitForSsh } from '../steps';
import { quoted } from '../../common/text';
import { firmwareConfig, LATEST } from './config';
import { FirmwareUpdateError } from './error';
import { updateHpeServer } from './hpe';
import { LvfsDevice } from './lvfs';

const firmwareUpdateDataSchema = z.object({ version: z.string().optional(), ignore_failure: z.boolean().default(false) }).passthrough();

/** SMBIOS chassis types by number (DMI's chassis_type). */
const CHASSIS_NAMES = [
  'Undefined', 'Other', 'Unknown', 'Desktop', 'Low Profile Desktop', 'Pizza Box', 'Mini Tower', 'Tower', 'Portable', 'Laptop', 'Notebook', 'Hand Held',
  'Docking Station', 'All In One', 'Sub Notebook', 'Space-saving', 'Lunch Box', 'Main Server Chassis', 'Expansion Chassis', 'Sub Chassis', 'Bus Expansion Chassis',
  'Peripheral Chassis', 'RAID Chassis', 'Rack Mount Chassis', 'Sealed-case PC', 'Multi-system', 'CompactPCI', 'AdvancedTCA', 'Blade', 'Blade Enclosure', 'Tablet',
  'Convertible', 'Detachable', 'IoT Gateway', 'Embedded PC', 'Mini PC', 'Stick PC',
];
/** Upstream's routes: which chassis each takes, and from which DMI vendors (exactly as DMI spells them). */
const LVFS = { chassis: ['Desktop', 'All In One', 'Rack Mount Chassis', 'Mini PC'], vendors: ['HP', 'Dell Inc.', 'LENOVO'] };
const HPE = { chassis: ['Tower', 'Main Server Chassis', 'Rack Mount Chassis', 'Multi-system', 'Blade'], vendors: ['HPE'] };

type Route = 'LVFS' | 'HPE';

/** The job's firmware_update_data; the agent runs this phase only for a job that has it. */
function firmwareUpdateData(ctx: PhaseContext): z.output<typeof firmwareUpdateDataSchema> {
  const parsed = firmwareUpdateDataSchema.safeParse(ctx.job.firmware_update_data);
  if (!parsed.success) throw new JobError(`bad firmware_update_data: ${describeIssues('testflinger.json', parsed.error, ['firmware_update_data'])}`);
  return parsed.data;
}

/** Reads the DMI chassis vendor and type (the first wait for the device is the device config's provision_ssh_wait, 60 s as upstream). */
async function readChassis(ctx: PhaseContext): Promise<{ vendor: string; type: string }> {
  const user = testUsername(ctx);
  try {
    await waitForSsh(ctx, user);
  } catch (error) {
    throw new FirmwareUpdateError((error as Error).message);
  }
  const read = (name: string) => sshRun(ctx.device, user, shellWords(['sudo', 'cat', `/sys/class/dmi/id/${name}`]), undefined, 30_000);
  const [vendor, type] = [await read('chassis_vendor'), await read('chassis_type')];
  const failed = [vendor, type].filter((result) => result.exitCode !== 0);
  if (failed.length > 0) throw new FirmwareUpdateError(`cannot read the DMI chassis vendor and type of ${describeTarget(ctx, user)}: ${quoted(failed.map((r) => r.output.trim()).join('; '))}`);
  return { vendor: vendor.output.trim(), type: type.output.trim() };
}

/** The route for the device; a chassis type that is no SMBIOS number fails the phase whatever ignore_failure says, as upstream's. */
async function detectRoute(ctx: PhaseContext): Promise<Route> {
  const { vendor, type } = await readChassis(ctx);
  const chassis = /^\d{1,3}$/.test(type) ? CHASSIS_NAMES[Number(type)] : undefined;
  if (chassis === undefined) throw new ConnectorError(`the device's DMI chassis_type ${quoted(type)} is no SMBIOS chassis type`);
  const takes = (route: typeof LVFS) => route.chassis.includes(chassis) && route.vendors.includes(vendor);
  const route: Route | undefined = takes(LVFS) ? 'LVFS' : takes(HPE) ? 'HPE' : undefined;
  if (!route) throw new FirmwareUpdateError(`DMI chassis_vendor ${quoted(vendor)}, chassis_type ${quoted(chassis)}: no firmware update route for this device (upstream's: LVFS for HP, Dell and Lenovo desktops, all-in-ones, mini PCs and rack servers; HPE servers)`);
  ctx.print(`firmware: ${describeTarget(ctx, testUsername(ctx))} is a ${quoted(vendor)} ${quoted(chassis)}: ${route}`);
  return route;
}

/** Upstream's LVFS wait for a rebooting device. */
const LVFS_REBOOT_SECONDS = 900;

async function updateLvfsDevice(ctx: PhaseContext, version: string | undefined): Promise<void> {
  if (version !== LATEST) throw new FirmwareUpdateError(`firmware_update_data.version ${quoted(version ?? null)}: an LVFS device is updated to "latest" only, as upstream`);
  const config = firmwareConfig(ctx.device);
  const device = new LvfsDevice(ctx, { rebootSeconds: config.firmware_reboot_timeout_seconds ?? LVFS_REBOOT_SECONDS, pollSeconds: config.firmware_poll_seconds });
  await device.readComponents();
  if (!(await device.upgrade())) return ctx.print('firmware: nothing was upgraded: no reboot');
  await device.reboot();
  if (!(await device.upgradesLanded())) throw new FirmwareUpdateError('the firmware version did not update successfully');
}

async function updateFirmware(ctx: PhaseContext, version: string | undefined): Promise<void> {
  firmwareConfig(ctx.device);
  const route = await detectRoute(ctx);
  if (route === 'HPE') return updateHpeServer(ctx, version);
  return updateLvfsDevice(ctx, version);
}

/** Exit 0 when updated (or nothing to update), 1 when the update failed, 0 then too with ignore_failure, as upstream. */
export const firmwareUpdate: PhaseFn = async (ctx) => {
  const data = firmwareUpdateData(ctx);
  try {
    await updateFirmware(ctx, data.version);
    return 0;
  } catch (error) {
    if (!(error instanceof FirmwareUpdateError)) throw error;
    ctx.print(`firmware: the update failed: ${error.message}`);
    if (!data.ignore_failure) return 1;
    ctx.print('firmware_update_data.ignore_failure is set: the job goes on');
    return 0;
  }
};
