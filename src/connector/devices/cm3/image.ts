/**
 * What the control host finds on the freshly written eMMC, and the user seeded there: upstream
 * mounts each partition in turn and recognises the image by its root (etc: classic Ubuntu,
 * system-data: Ubuntu Core, snaps: Ubuntu Core 20 and later).
 */
import { z } from 'zod';
import { ConnectorError } from '../../errors';
import { shellWords } from '../../steps';
import { quoted } from '../../../common/text';
import type { BoardRun } from '../sshboot/password';
import { checkOn, runOn, type SshTarget } from '../sshboot/remote';
import { CORE20_CLOUD_CFG, seedNoCloud, writeAsRoot } from '../sshboot/seed';
import type { Cm3Config } from './config';

export type ImageType = 'ubuntu' | 'core' | 'core20' | 'unknown';
export type Cm3Run = BoardRun<Cm3Config> & { control: SshTarget };

const CONTROL_TIMEOUT_MS = 60_000;
const MOUNT_POINT = '/mnt';
/** The first of these found at a partition's root names the image (upstream's order). */
const IMAGE_PATH_IDS: readonly [string, ImageType][] = [
  ['etc', 'ubuntu'],
  ['system-data', 'core'],
  ['snaps', 'core20'],
];

/** lsblk's answer comes from the control host: partition names are taken only when plainly names. */
const lsblkSchema = z.object({
  blockdevices: z.array(z.object({ children: z.array(z.object({ name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional() }).passthrough()) }).passthrough()).min(1),
});

export function control(run: Cm3Run, command: string, timeoutMs = CONTROL_TIMEOUT_MS): Promise<string> {
  return checkOn(run.ctx, run.control, command, timeoutMs, 'control host command failed');
}

/** Runs `work` with /dev/<partition> mounted on /mnt of the control host, unmounting it after. */
export async function withMounted<T>(run: Cm3Run, partition: string, work: () => Promise<T>): Promise<T> {
  await control(run, shellWords(['sudo', 'mount', `/dev/${partition}`, MOUNT_POINT]));
  try {
    return await work();
  } finally {
    await control(run, shellWords(['sudo', 'umount', MOUNT_POINT]));
  }
}

async function partitions(run: Cm3Run): Promise<string[]> {
  const output = await control(run, shellWords(['lsblk', '-J', run.config.test_device]));
  let parsed: z.SafeParseReturnType<unknown, z.output<typeof lsblkSchema>>;
  try {
    parsed = lsblkSchema.safeParse(JSON.parse(output));
  } catch {
    throw new ConnectorError(`lsblk on the control host did not answer JSON: ${quoted(output.trim())}`);
  }
  if (!parsed.success) throw new ConnectorError(`lsblk on the control host gave an unexpected answer for ${run.config.test_device}: ${quoted(output.trim())}`);
  return (parsed.data.blockdevices[0]?.children ?? []).flatMap((child) => (child.name ? [child.name] : []));
}

/** The image type and the partition that holds its root; a partition that will not mount is passed over, as upstream. */
export async function findImage(run: Cm3Run): Promise<{ type: ImageType; partition: string }> {
  const names = await partitions(run);
  for (const partition of names) {
    const listing = await withMounted(run, partition, () => control(run, shellWords(['ls', MOUNT_POINT]))).catch(() => '');
    const entries = listing.split(/\s+/);
    const found = IMAGE_PATH_IDS.find(([entry]) => entries.includes(entry));
    if (found) return { type: found[1], partition };
  }
  const last = names.at(-1);
  if (last === undefined) throw new ConnectorError(`${run.config.test_device} on the control host has no partitions`);
  return { type: 'unknown', partition: last };
}

/** Upstream's create_user: a NoCloud seed, or on Core 20+ a cloud.cfg.d file; classic images lose their fake-cloud datasource. */
export async function seedUser(run: Cm3Run, type: ImageType): Promise<void> {
  const { ctx, control: target } = run;
  const base = type === 'core' ? `${MOUNT_POINT}/system-data` : MOUNT_POINT;
  try {
    if (type === 'core20') return await writeAsRoot(ctx, target, `${base}/data/etc/cloud/cloud.cfg.d/99_nocloud.cfg`, CORE20_CLOUD_CFG, 'Error creating user files');
    await seedNoCloud(ctx, target, base);
    // Left in place, the image's own datasource hides the seed from cloud-init. The ? (upstream's
    // glob for - or _) is expanded by root's shell, which can read the mounted image.
    if (type === 'ubuntu') await control(run, shellWords(['sudo', 'sh', '-c', 'rm -f "$1"?cloud.cfg', 'rm-fake-cloud', `${base}/etc/cloud/cloud.cfg.d/99-fake`]));
  } catch (error) {
    throw new ConnectorError('Error creating user files', { cause: error });
  }
}

/** The eMMC seen as a plain file (no module attached when it was written) is removed before writing. */
export async function removeStrayDeviceFile(run: Cm3Run): Promise<void> {
  if ((await runOn(run.ctx, run.control, 'test -f /dev/sda', CONTROL_TIMEOUT_MS)).exitCode === 0) await control(run, 'sudo rm -f /dev/sda');
}
