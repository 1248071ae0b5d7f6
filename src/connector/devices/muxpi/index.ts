/**
 * muxpi: a device that boots from an SD card (or a USB stick) behind an SD multiplexer (a MuxPi,
 * an SDWire) driven by a control host, as upstream's connector of that name. The card is switched
 * to the control host, the image written onto it there, the test user seeded on it, and the card
 * switched back; the device is then hard reset and the test image waited for.
 */
import { testUsername, writeDeviceInfo, type PhaseContext, type PhaseFn } from '../../phases';
import { startSerialLog } from '../../serial';
import { quoted } from '../../../common/text';
import type { DeviceType } from '../types';
import { awaitTestImage, hardReset, rebootControlHostAndDevice, type BootCheck } from './boot';
import { muxpiConfig, muxpiConfigSchema, muxpiProvision, usesMuxCli, type MuxpiConfig, type MuxpiProvision } from './config';
import { ControlHost } from './control';
import { openImage, type ImageSource } from './image';
import { seedTestUser } from './create-user';
import { flashImage, withCardOnControlHost } from './storage';

/** Upstream's pause after rebooting the SDWire's control host. */
const AFTER_SDWIRE_REBOOT_MS = 5_000;

function bootCheck(ctx: PhaseContext, config: MuxpiConfig, data: MuxpiProvision): BootCheck {
  const testData = (ctx.job.test_data ?? {}) as Record<string, unknown>;
  const password = typeof testData['test_password'] === 'string' ? testData['test_password'] : 'ubuntu';
  // Only a literal $DEVICE_IP is replaced, as upstream: no other expansion.
  const url = data.boot_check_url?.split('$DEVICE_IP').join(config.device_ip);
  return { url, user: testUsername(ctx), password };
}

/** Everything done with the card on the control host: write, seed, post_provision_script. */
async function prepareCard(ctx: PhaseContext, config: MuxpiConfig, control: ControlHost, data: MuxpiProvision, image: ImageSource, device: string): Promise<void> {
  await flashImage(ctx, control, device, image);
  if (data.create_user) await seedTestUser(ctx, config, control, device);
  else ctx.print('Skipping test user creation (create_user=False)');
  // Run on the control host, as upstream; a failing command is noted and never fails the job.
  for (const command of config.post_provision_script) {
    ctx.print(`Running ${quoted(command)}`);
    const result = await control.attempt(command);
    if (result.exitCode !== 0) ctx.print(`Error running ${quoted(command)} (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
  }
}

async function provisionMuxpi(ctx: PhaseContext, config: MuxpiConfig, data: MuxpiProvision): Promise<void> {
  const control = new ControlHost(ctx, config);
  if (!usesMuxCli(config)) {
    await rebootControlHostAndDevice(ctx, config, control);
    await ctx.sleep(AFTER_SDWIRE_REBOOT_MS);
  }
  // Downloaded before the card leaves the device (upstream downloads it after switching).
  const image = await openImage(data, ctx.runDir, config, ctx.print);
  try {
    await withCardOnControlHost(control, config, data.media, (device) => prepareCard(ctx, config, control, data, image, device));
  } finally {
    image.close();
  }
  ctx.print('Booting Test Image');
  await hardReset(ctx, config);
  await awaitTestImage(ctx, config, bootCheck(ctx, config, data));
}

const provision: PhaseFn = async (ctx) => {
  const data = muxpiProvision(ctx.job);
  const config = muxpiConfig(ctx.device);
  // As upstream, after the connector's pre-provision hook.
  const serial = startSerialLog(ctx.print, ctx.runDir, 'provision', config.serial_host, config.serial_port);
  try {
    await provisionMuxpi(ctx, config, data);
  } finally {
    serial.stop();
  }
  writeDeviceInfo(ctx);
  return 0;
};

/**
 * As upstream, the connector's pre-provision hook keeps the device off while the control host is
 * power cycled; the job is checked whole before that. The test phase is the shared one.
 */
export const muxpi: DeviceType = {
  name: 'muxpi',
  phases: { provision },
  configSchema: muxpiConfigSchema,
  managesDutPower: true,
  checkProvision: (ctx) => void muxpiProvision(ctx.job),
};
