/**
 * The card: switched by the mux to the control host, written there, its partitions mounted for
 * seeding, and switched back to the device, as upstream's muxpi connector does it.
 */
import * as path from 'node:path';
import { z } from 'zod';
import type { PhaseContext } from '../../phases';
import { shellWords } from '../../steps';
import { quoted } from '../../../common/text';
import { blockDevicePath, muxCliCommand, testDevice, type MuxpiConfig, type MuxpiProvision } from './config';
import type { ControlHost } from './control';
import { ProvisioningError } from './errors';
import type { ImageSource } from './image';

const UNMOUNT_TIMEOUT_MS = 30_000;
const HDPARM_TIMEOUT_MS = 40_000;
/** Upstream's pauses: after a failed sync, and before asking lsblk again for labels not there yet. */
const SYNC_FAILED_PAUSE_MS = 30_000;
const LABELS_PAUSE_MS = 10_000;

/** Runs `use` with the card connected to the control host (its block device there), then switches it back to the device, whatever happened. */
export async function withCardOnControlHost<T>(control: ControlHost, config: MuxpiConfig, media: MuxpiProvision['media'], use: (blockDevice: string) => Promise<T>): Promise<T> {
  if (media === undefined) {
    const device = testDevice(config);
    await control.run(config.control_switch_local_cmd);
    try {
      return await use(device);
    } finally {
      await control.run(config.control_switch_device_cmd);
    }
  }
  // A device that boots from either medium: both come to the control host, as upstream switches them.
  const cli = muxCliCommand(config);
  const nodes = { sd: await control.attempt(`${cli} sdwire plug_to_self`), usb: await control.attempt(`${cli} typecmux plug_to_self`) };
  const chosen = nodes[media];
  const muxDevice = media === 'sd' ? 'sdwire' : 'typecmux';
  try {
    if (chosen.exitCode !== 0) throw new ProvisioningError(`${quoted(`${cli} ${muxDevice} plug_to_self`)} failed on the control host (exit ${chosen.exitCode}): ${quoted(chosen.output.trim())}`);
    const node = blockDevicePath.safeParse(chosen.output.trim());
    if (!node.success) throw new ProvisioningError(`${quoted(`${cli} ${muxDevice} plug_to_self`)} did not answer with a block device: ${quoted(chosen.output.trim())}`);
    return await use(node.data);
  } finally {
    await control.run(`${cli} ${muxDevice} set DUT`);
  }
}

/**
 * Writes the image onto the card: streamed over ssh into `zstdcat | sudo dd of=<card> bs=16M`
 * (zstd reads zstd, xz, gzip and lz4 images), then `sync` and a partition rescan.
 */
export async function flashImage(ctx: PhaseContext, control: ControlHost, device: string, image: ImageSource): Promise<void> {
  // Unmounted first, in case: a card that is not mounted fails this, which is fine.
  const unmount = await control.attempt(`sudo umount ${shellWords([device])}*`, UNMOUNT_TIMEOUT_MS);
  if (unmount.exitCode !== 0) ctx.print(`Device ${quoted(device)} might not be mounted`);
  ctx.print(`Flashing Test image ${quoted(image.name)} on ${quoted(device)}`);
  // pipefail: an image that zstdcat cannot read to its end fails the flash, not only a failing dd.
  const write = `zstdcat | sudo dd of=${shellWords([device])} bs=16M`;
  const result = await control.pipe(image.fd, `bash -o pipefail -c ${shellWords([write])}`, image.flashTimeoutSeconds * 1000);
  const through = `${quoted(device)} through ${control.name}`;
  if (result.exitCode === 124) throw new ProvisioningError(`Timeout while piping the test image to ${through} using a timeout of ${image.flashTimeoutSeconds}s`);
  if (result.exitCode !== 0) throw new ProvisioningError(`Error while piping the test image to ${through} (exit ${result.exitCode}): ${quoted(result.output.trim(), 400)}`);
  if (!(await control.succeeds('sync'))) {
    ctx.print('Something went wrong with the sync, sleeping...');
    await ctx.sleep(SYNC_FAILED_PAUSE_MS);
  }
  const rescan = await control.attempt(`sudo hdparm -z ${shellWords([device])}`, HDPARM_TIMEOUT_MS);
  if (rescan.exitCode !== 0) throw new ProvisioningError(`Unable to run hdparm to rescan partitions: ${quoted(rescan.output.trim())}`);
}

/** A partition: its kernel name (sda2) and label (writable), both used in paths and so checked. */
interface Partition {
  name: string;
  label: string;
}

const lsblkSchema = z.object({
  blockdevices: z.array(z.object({ children: z.array(z.object({ name: z.string().nullish(), label: z.string().nullish() }).passthrough()).default([]) }).passthrough()).min(1),
});

const PARTITION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const LABEL = /^(?!\.\.?$)[A-Za-z0-9_.-]{1,64}$/;

/** The card's labelled partitions, from `lsblk -J`; one whose name or label could not be a plain path word is left out, and said so. */
export function labelledPartitions(lsblkJson: string, print: (line: string) => void): Partition[] {
  let doc: unknown;
  try {
    doc = JSON.parse(lsblkJson);
  } catch {
    throw new ProvisioningError(`lsblk did not answer with JSON: ${quoted(lsblkJson)}`);
  }
  const parsed = lsblkSchema.safeParse(doc);
  if (!parsed.success) throw new ProvisioningError(`lsblk's answer has no block device: ${quoted(lsblkJson)}`);
  const found: Partition[] = [];
  for (const child of parsed.data.blockdevices[0]?.children ?? []) {
    if (!child.name || !child.label) continue;
    if (PARTITION_NAME.test(child.name) && LABEL.test(child.label)) found.push({ name: child.name, label: child.label });
    else print(`partition ${quoted(child.name)} labelled ${quoted(child.label)} is not mounted (its name or label is not a plain word)`);
  }
  return found;
}

async function partitions(ctx: PhaseContext, control: ControlHost, device: string): Promise<Partition[]> {
  const list = async () => labelledPartitions(await control.run(`lsblk -o NAME,LABEL -J ${shellWords([device])}`), ctx.print);
  const first = await list();
  if (first.length > 0) return first;
  // Labels sometimes show up a moment after the rescan.
  ctx.print('No valid partitions found, retrying...');
  await ctx.sleep(LABELS_PAUSE_MS);
  return list();
}

/**
 * Runs `use` with the card's partitions mounted at <mountBase>/<label> on the control host; a
 * partition that cannot be mounted is skipped, as upstream. Unmounted afterwards.
 */
export async function withMountedCard<T>(ctx: PhaseContext, control: ControlHost, device: string, mountBase: string, use: () => Promise<T>): Promise<T> {
  const mounted: string[] = [];
  for (const { name, label } of await partitions(ctx, control, device)) {
    const point = path.posix.join(mountBase, label);
    const result = await control.attempt(`sudo mkdir -p ${shellWords([point])} && sudo mount ${shellWords([`/dev/${name}`, point])}`);
    if (result.exitCode === 0) mounted.push(point);
    else ctx.print(`cannot mount /dev/${name} at ${quoted(point)} (skipped): ${quoted(result.output.trim())}`);
  }
  try {
    return await use();
  } finally {
    for (const point of mounted) await control.run(`sudo umount ${shellWords([point])}`);
  }
}
