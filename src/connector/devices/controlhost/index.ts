/**
 * The control-host family: device types whose provisioning runs on a control host next to the
 * device, driven through its REST API (./run.ts). Each checks its job before the control host
 * hears anything.
 */
import { testUsername, writeDeviceInfo, type PhaseContext, type PhaseFn } from '../../phases';
import { startSerialLog, testWithSerialLog } from '../../serial';
import type { DeviceType } from '../types';
import { controlHostConfig, controlHostConfigSchema, jobCredentials, readTimeoutSeconds, type ControlHostConfig } from './config';
import { copyAgentKey } from './copy-id';
import { IOT_METHOD, iotProvision, iotRequest } from './iot';
import { KVM_METHOD, kvmProvision, kvmRequest, restoresOemImage } from './kvm';
import { checkOemSteps, finishOemRestore } from './oem-login';
import { prepareImageDeploy, provisionFromImage } from './oem-image-deploy';
import { OEM_METHOD, oemAutoinstallConfigSchema, oemAutoinstallProvision, oemRequest, usesIso } from './oem-autoinstall';
import { powerCycleControlHost } from './powercycle';
import { jobSecrets, provisionOnControlHost, setupControlHost } from './run';

/**
 * Upstream's pre-provision hook (a power cycle of the control host, then a best-effort setup
 * request), then the provisioning on the control host, followed to its end. `manageDutPower`:
 * the device is kept off while the control host reboots (control_host_iot).
 */
async function provisionThrough(ctx: PhaseContext, config: ControlHostConfig, method: string, kwargs: Record<string, unknown>, manageDutPower = false): Promise<void> {
  await powerCycleControlHost(ctx, config, manageDutPower);
  await setupControlHost(ctx, config, 'provisioning');
  await provisionOnControlHost({ ctx, config, readTimeoutSeconds: readTimeoutSeconds(ctx.job), secrets: jobSecrets(ctx.job) }, method, kwargs);
  ctx.print(`the control host finished ${method}`);
}

/** As upstream, the control host is asked (best effort) to prepare for the test phase first; the serial console is logged meanwhile. */
const test: PhaseFn = async (ctx) => {
  if (ctx.device['control_host'] !== undefined) await setupControlHost(ctx, controlHostConfig(ctx.device), 'test');
  return testWithSerialLog(ctx);
};

const kvmProvisionPhase: PhaseFn = async (ctx) => {
  const data = kvmProvision(ctx.job);
  const oemImage = restoresOemImage(data);
  if (oemImage) checkOemSteps(ctx, data.url);
  const kwargs = kvmRequest(ctx, data);
  await provisionThrough(ctx, controlHostConfig(ctx.device), KVM_METHOD, kwargs);
  if (oemImage) await finishOemRestore(ctx, data.oem, data.url);
  writeDeviceInfo(ctx);
  return 0;
};

/** As upstream, control_host_iot logs the device's serial console while it provisions. */
const iotProvisionPhase: PhaseFn = async (ctx) => {
  const data = iotProvision(ctx.job);
  const kwargs = iotRequest(ctx, data);
  const config = controlHostConfig(ctx.device);
  const serial = startSerialLog(ctx.print, ctx.runDir, 'provision', config.serial_host, config.serial_port);
  try {
    await provisionThrough(ctx, config, IOT_METHOD, kwargs, true);
    // As upstream: the test user and password of test_data (ubuntu/ubuntu by default), not the provisioning ones.
    if (data.agent_ssh_access && !data.ubuntu_sso_email) await copyAgentKey(ctx, testUsername(ctx), jobCredentials(ctx.job, { username: 'ubuntu', password: 'ubuntu' }).password);
  } finally {
    serial.stop();
  }
  writeDeviceInfo(ctx);
  return 0;
};

/** As upstream: the ISO route, then the url route, each when its keys are given. */
const oemAutoinstallProvisionPhase: PhaseFn = async (ctx) => {
  const data = oemAutoinstallProvision(ctx.job);
  const config = oemAutoinstallConfigSchema.parse(ctx.device);
  // The url route's job and files are checked before the control host hears anything.
  const image = data.url ? prepareImageDeploy(ctx, data) : undefined;
  if (usesIso(data)) await provisionThrough(ctx, controlHostConfig(ctx.device), OEM_METHOD, oemRequest(ctx, data));
  if (image) await provisionFromImage(ctx, image, config.oem_autoinstall_poll_seconds);
  if (!usesIso(data) && !data.url) ctx.print('no control_host_iso_url, control_host_iso_type or url in provision_data: nothing to provision');
  writeDeviceInfo(ctx);
  return 0;
};

export const control_host_kvm: DeviceType = { name: 'control_host_kvm', phases: { provision: kvmProvisionPhase, test }, configSchema: controlHostConfigSchema };
export const control_host_iot: DeviceType = { name: 'control_host_iot', phases: { provision: iotProvisionPhase, test }, configSchema: controlHostConfigSchema };
export const oem_autoinstall: DeviceType = { name: 'oem_autoinstall', phases: { provision: oemAutoinstallProvisionPhase, test }, configSchema: oemAutoinstallConfigSchema };
