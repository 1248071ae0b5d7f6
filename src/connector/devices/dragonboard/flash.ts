/**
 * Writing the test image from the master image: it pulls the xz image from this host's one-shot
 * server (`nc`), unpacks it onto the SD card (`unxz | sudo dd`), rescans the partitions, and
 * seeds cloud-init on the writable partition so the test image's first boot creates its user.
 */
import { ConnectorError } from '../../errors';
import { shellWords } from '../../steps';
import { quoted } from '../../../common/text';
import type { ImageServer } from '../sshboot/image';
import { checkOn, runOn } from '../sshboot/remote';
import { seedNoCloud, writeAsRoot } from '../sshboot/seed';
import type { Board } from './boot';

const FLASH_TIMEOUT_MS = 30 * 60_000;
const SHORT_TIMEOUT_MS = 30_000;
const DEFAULT_TIMEOUT_MS = 60_000;
const SYNC_RETRY_PAUSE_MS = 30_000;

/**
 * Upstream's pipeline, run by bash with pipefail: a download or unpack that breaks off half-way
 * fails the flash at once (upstream's sh pipeline reports dd's status alone).
 */
const FLASH_SCRIPT = 'set -o pipefail; nc "$1" "$2" | unxz | sudo dd of="$3" bs=16M';

export async function flashTestImage(board: Board, server: ImageServer): Promise<void> {
  const { ctx, config, master } = board;
  const device = config.test_device;
  // Mounted partitions of the card would be written under the kernel's feet; none mounted is fine.
  await runOn(ctx, master, `sudo umount ${shellWords([device])}*`, SHORT_TIMEOUT_MS);
  ctx.print(`Running: nc ${server.address} ${server.port} | unxz | sudo dd of=${device} bs=16M`);
  const flashed = await runOn(ctx, master, shellWords(['bash', '-c', FLASH_SCRIPT, 'flash', server.address, String(server.port), device]), FLASH_TIMEOUT_MS);
  if (flashed.exitCode === 124) throw new ConnectorError('timeout reached while flashing image!');
  if (flashed.exitCode !== 0) throw new ConnectorError(`writing the image to ${device} failed (exit ${flashed.exitCode}): ${quoted(flashed.output.trim(), 400)}`);
  if ((await runOn(ctx, master, 'sync', DEFAULT_TIMEOUT_MS)).exitCode !== 0) {
    ctx.print('Something went wrong with the sync, sleeping...');
    await ctx.sleep(SYNC_RETRY_PAUSE_MS);
  }
  await checkOn(ctx, master, shellWords(['sudo', 'hdparm', '-z', device]), SHORT_TIMEOUT_MS, 'Unable to run hdparm to rescan partitions');
}

/** Upstream's create_user and setup_sudo: the writable partition on /mnt, the seed, and sudo for ubuntu on Ubuntu Core. */
export async function seedTestUser(board: Board): Promise<void> {
  const { ctx, config, master } = board;
  const partition = config.snappy_writable_partition;
  await checkOn(ctx, master, shellWords(['sudo', 'mount', partition, '/mnt']), DEFAULT_TIMEOUT_MS, `Error mounting writable partition on test image ${partition}. Check device configuration`);
  const listing = await checkOn(ctx, master, shellWords(['sudo', 'ls', '/mnt']), DEFAULT_TIMEOUT_MS, 'Error creating user files');
  const base = listing.split(/\s+/).includes('system-data') ? '/mnt/system-data' : '/mnt';
  await seedNoCloud(ctx, master, base);
  await writeAsRoot(ctx, master, '/mnt/system-data/etc/sudoers.d/ubuntu', 'ubuntu ALL=(ALL) NOPASSWD:ALL\n', 'Error setting up sudo');
}

/** After a failed write the card is wiped (a fresh GPT), so the next boot falls back to the master image; errors here are ignored. */
export async function wipeTestDevice(board: Board): Promise<void> {
  board.ctx.print('Failed to write image, cleaning up...');
  await runOn(board.ctx, board.master, shellWords(['sudo', 'sgdisk', '-o', board.config.test_device]), DEFAULT_TIMEOUT_MS);
}
