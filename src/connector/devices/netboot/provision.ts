/**
 * Upstream's netboot provision: the device is brought to its master image (an imager on HTTP),
 * which writes the job's image, served once from here, to test_device; then the device boots the
 * test image, which takes the agents' key by password. The serial console is logged while the
 * image is written and booted.
 */
import * as fs from 'node:fs';
import { ConnectorError, RecoveryError } from '../../errors';
import { writeDeviceInfo, type PhaseContext } from '../../phases';
import { sshRun } from '../../ssh';
import { recoveryFailed } from '../../steps';
import { imageUrl } from '../sshboot/config';
import { fetchImageAsXz, localAddressFor, serveOnce, type ImageServer } from '../sshboot/image';
import { hardReset, runScript, selectBoot } from '../sshboot/local';
import { copyIdWithPassword, testImageLogin, type BoardRun } from '../sshboot/password';
import { logSerialWhile } from '../../serial';
import { waitUntil } from '../sshboot/wait';
import { netbootConfig, type NetbootConfig } from './config';
import { masterImageBooted, rebootFromImager, writeImage } from './imager';

const SSH_TIMEOUT_MS = 60_000;

type Run = BoardRun<NetbootConfig>;

/** The test image runs when it takes the agents' key by password (ssh-copy-id -f, 60 s). */
async function testImageBooted(run: Run): Promise<boolean> {
  return (await copyIdWithPassword(run.login, { force: true, timeoutMs: SSH_TIMEOUT_MS })).exitCode === 0;
}

/** Upstream's ensure_test_image: select it, reboot (a power cycle when the device will not take `sudo /sbin/reboot`), and wait. */
async function ensureTestImage(run: Run): Promise<void> {
  const { ctx, config } = run;
  ctx.print('Booting the test image');
  if (await testImageBooted(run)) return;
  await selectBoot(ctx, config.select_test_script, true);
  if ((await sshRun(ctx.device, run.login.user, 'sudo /sbin/reboot', undefined, SSH_TIMEOUT_MS)).exitCode !== 0) await hardReset(ctx, config.reboot_script);
  await ctx.sleep(config.boot_settle_seconds * 1000);
  const booted = await waitUntil(ctx, () => testImageBooted(run), (up) => up, { seconds: config.boot_timeout_seconds, pauseSeconds: config.boot_poll_seconds });
  if (!booted.done) throw new ConnectorError('Failed to boot test image!');
}

/** Upstream's ensure_master_image: select it, power cycle, and wait for the imager. */
async function ensureMasterImage(run: Run): Promise<void> {
  const { ctx, config } = run;
  ctx.print('Making sure the master image is booted');
  if (await masterImageBooted(ctx, config)) return;
  await selectBoot(ctx, config.select_master_script, true);
  await hardReset(ctx, config.reboot_script);
  const booted = await waitUntil(ctx, () => masterImageBooted(ctx, config), (up) => up, { seconds: config.master_boot_timeout_seconds, pauseSeconds: config.boot_poll_seconds });
  if (!booted.done) throw recoveryFailed('Could not reboot to master image!');
}

/** A device not in its master image is taken through the test image to it; failing that, it is not usable (exit 46). */
async function recoverToMaster(run: Run): Promise<void> {
  if (await masterImageBooted(run.ctx, run.config)) return;
  try {
    await ensureTestImage(run);
    await ensureMasterImage(run);
  } catch (error) {
    if (error instanceof RecoveryError) throw error;
    throw recoveryFailed('Unable to put system in a usable state!', error);
  }
}

async function flashAndBoot(run: Run, server: ImageServer): Promise<void> {
  const { ctx, config } = run;
  ctx.print('Flashing Test Image');
  await writeImage(ctx, config, server);
  await runScript(ctx, config.post_flash_cmds, {
    timeoutMs: SSH_TIMEOUT_MS,
    shell: true,
    onTimeout: () => new ConnectorError('timeout reaching control host!'),
    onFailure: (command, code) => new ConnectorError(`Error running ${command} (rc=${code})`),
  });
  await rebootFromImager(ctx, config);
  ctx.print('Booting Test Image');
  await ensureTestImage(run);
}

export async function provisionNetboot(ctx: PhaseContext): Promise<number> {
  const config = netbootConfig(ctx.device);
  const url = imageUrl(ctx.job);
  const run: Run = { ctx, config, login: testImageLogin(ctx, 'admin') };
  const image = await fetchImageAsXz(ctx, url);
  try {
    ctx.print('Booting Master Image');
    await recoverToMaster(run);
    const server = await serveOnce(image.file, await localAddressFor(ctx.device.device_ip));
    try {
      await logSerialWhile(ctx, 'provision', () => flashAndBoot(run, server));
    } finally {
      server.close();
    }
  } finally {
    fs.rmSync(image.dir, { recursive: true, force: true });
  }
  writeDeviceInfo(ctx);
  ctx.print('END provision');
  return 0;
}
