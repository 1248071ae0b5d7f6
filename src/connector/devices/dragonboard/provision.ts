/**
 * Upstream's dragonboard provision: into the master image, the job's image downloaded here and
 * written to the SD card from there, a user seeded, then into the test image. The serial console
 * is logged throughout.
 */
import * as fs from 'node:fs';
import { writeDeviceInfo, type PhaseContext } from '../../phases';
import { imageUrl } from '../sshboot/config';
import { fetchImageAsXz, localAddressFor, serveOnce } from '../sshboot/image';
import { testImageLogin } from '../sshboot/password';
import { logSerialWhile } from '../../serial';
import { copyKeyToTestImage, ensureMasterImage, ensureTestImage, type Board } from './boot';
import { dragonboardConfig } from './config';
import { flashTestImage, seedTestUser, wipeTestDevice } from './flash';

/** A write or seed that fails leaves a card the board must not boot: it is wiped while the master image still runs. */
async function writeCard(board: Board, imageFile: string): Promise<void> {
  const server = await serveOnce(imageFile, await localAddressFor(board.ctx.device.device_ip));
  try {
    board.ctx.print('Flashing Test Image');
    await flashTestImage(board, server);
    server.close();
    board.ctx.print('Creating Test User');
    await seedTestUser(board);
  } catch (error) {
    await wipeTestDevice(board);
    throw error;
  } finally {
    server.close();
  }
}

export async function provisionDragonboard(ctx: PhaseContext): Promise<number> {
  const config = dragonboardConfig(ctx.device);
  const url = imageUrl(ctx.job);
  const board: Board = {
    ctx,
    config,
    master: { host: ctx.device.device_ip, port: ctx.device.ssh_port, user: config.master_username },
    test: testImageLogin(ctx, 'ubuntu'),
  };
  ctx.print('Booting Master Image');
  await logSerialWhile(ctx, 'provision', async () => {
    await copyKeyToTestImage(board);
    await ensureMasterImage(board);
    const image = await fetchImageAsXz(ctx, url);
    try {
      await writeCard(board, image.file);
    } finally {
      fs.rmSync(image.dir, { recursive: true, force: true });
    }
    ctx.print('Booting Test Image');
    await ensureTestImage(board);
    // Upstream's pause for the test image's first-boot tasks.
    await ctx.sleep(config.boot_settle_seconds * 1000);
  });
  writeDeviceInfo(ctx);
  ctx.print('END provision');
  return 0;
}
