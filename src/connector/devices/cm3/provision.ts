/**
 * Upstream's cm3 provision: the control host holds the module in USB boot mode (GPIO 16 high)
 * across a power cycle, writes the image to its eMMC with cm3-installer, seeds the user, powers
 * the USB disk off and releases the GPIO, and after another power cycle the module boots the
 * new image, which takes the agents' key by password. The serial console is logged throughout.
 */
import { ConnectorError } from '../../errors';
import { writeDeviceInfo, type PhaseContext } from '../../phases';
import { shellWords } from '../../steps';
import { imageUrl } from '../sshboot/config';
import { hardReset } from '../sshboot/local';
import { copyIdWithPassword, testImageLogin } from '../sshboot/password';
import { logSerialWhile } from '../../serial';
import { waitUntil } from '../sshboot/wait';
import { cm3Config } from './config';
import { control, findImage, removeStrayDeviceFile, seedUser, withMounted, type Cm3Run } from './image';

const INSTALL_TIMEOUT_MS = 30 * 60_000;
const COPY_ID_TIMEOUT_MS = 60_000;

function pause(run: Cm3Run): Promise<void> {
  return run.ctx.sleep(run.config.boot_settle_seconds * 1000);
}

async function writeImage(run: Cm3Run, url: string): Promise<void> {
  await removeStrayDeviceFile(run);
  await control(run, 'sudo pi3gpio set high 16');
  await pause(run);
  await hardReset(run.ctx, run.config.reboot_script);
  run.ctx.print('Flashing image');
  run.ctx.print((await control(run, shellWords(['sudo', 'cm3-installer', url]), INSTALL_TIMEOUT_MS)).trimEnd());
  const image = await findImage(run);
  await withMounted(run, image.partition, async () => {
    run.ctx.print(`Creating Test User (${image.type} image on ${image.partition})`);
    await seedUser(run, image.type);
  });
}

async function bootImage(run: Cm3Run): Promise<void> {
  await control(run, 'sudo sync');
  await pause(run);
  run.ctx.print((await control(run, 'sudo udisksctl power-off -b /dev/sda')).trimEnd());
  await pause(run);
  await control(run, 'sudo pi3gpio set low 16');
  await pause(run);
  await hardReset(run.ctx, run.config.reboot_script);
  run.ctx.print('Checking if test image booted.');
  const took = async () => (await copyIdWithPassword(run.login, { timeoutMs: COPY_ID_TIMEOUT_MS })).exitCode === 0;
  const booted = await waitUntil(run.ctx, took, (yes) => yes, { seconds: run.config.boot_timeout_seconds, pauseSeconds: run.config.boot_poll_seconds });
  if (booted.done) return;
  run.ctx.print(`Device ${run.config.agent_name ?? run.config.device_ip} unreachable after provisioning, deployment failed!`);
  throw new ConnectorError('Failed to boot test image!');
}

export async function provisionCm3(ctx: PhaseContext): Promise<number> {
  const config = cm3Config(ctx.device);
  const url = imageUrl(ctx.job);
  const run: Cm3Run = {
    ctx,
    config,
    login: testImageLogin(ctx, 'ubuntu'),
    control: { host: config.control_host, user: config.control_user },
  };
  ctx.print('Provisioning device');
  await logSerialWhile(ctx, 'provision', async () => {
    await writeImage(run, url);
    await bootImage(run);
  });
  writeDeviceInfo(ctx);
  ctx.print('END provision');
  return 0;
}
