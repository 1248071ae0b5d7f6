/**
 * The control-host family: device types whose provisioning runs on a control host next to the
 * device, driven through its REST API (./run.ts). The connector runs the control host's hooks
 * around their phases (../../controlhost-hooks.ts); each checks its job before those.
 */
import { testUsername, writeDeviceInfo, type PhaseContext, type PhaseFn } from '../../phases';
import type { DeviceType } from '../types';
import { controlHostConfig, controlHostConfigSchema, jobCredentials, readTimeoutSeconds, type ControlHostConfig } from './config';
import { copyAgentKey } from './copy-id';
import { IOT_METHOD, iotProvision, iotRequest } from './iot';
import { KVM_METHOD, kvmProvision, kvmRequest, restoresOemImage, type KvmProvision } from './kvm';
import { checkOemSteps, finishOemRestore } from './oem-login';
import { prepareImageDeploy, provisionFromImage, type ImageDeploy } from './oem-image-deploy';
import { OEM_METHOD, oemAutoinstallConfigSchema, oemAutoinstallProvision, oemRequest, usesIso, type OemAutoinstallProvision } from './oem-autoinstall';
import { jobSecrets, provisionOnControlHost } from './run';

/** The provisioning on the control host, followed to its end. */
async function provisionThrough(ctx: PhaseContext, config: ControlHostConfig, method: string, kwargs: Record<string, unknown>): Promise<void> {
  await provisionOnControlHost({ ctx, config, readTimeoutSeconds: readTimeoutSeconds(ctx.job), secrets: jobSecrets(ctx.job) }, method, kwargs);
  ctx.print(`the control host finished ${method}`);
}

/** The kvm job, checked whole: its provision_data, and the OEM restore's steps when it asks one. */
function kvmJob(ctx: PhaseContext): KvmProvision {
  const data = kvmProvision(ctx.job);
  if (restoresOemImage(data)) checkOemSteps(ctx, data.url);
  return data;
}

const kvmProvisionPhase: PhaseFn = async (ctx) => {
  const data = kvmJob(ctx);
  const oemImage = restoresOemImage(data);
  const kwargs = kvmRequest(ctx, data);
  await provisionThrough(ctx, controlHostConfig(ctx.device), KVM_METHOD, kwargs);
  if (oemImage) await finishOemRestore(ctx, data.oem, data.url);
  writeDeviceInfo(ctx);
  return 0;
};

const iotProvisionPhase: PhaseFn = async (ctx) => {
  const data = iotProvision(ctx.job);
  const kwargs = iotRequest(ctx, data);
  await provisionThrough(ctx, controlHostConfig(ctx.device), IOT_METHOD, kwargs);
  // As upstream: the test user and password of test_data (ubuntu/ubuntu by default), not the provisioning ones.
  if (data.agent_ssh_access && !data.ubuntu_sso_email) await copyAgentKey(ctx, testUsername(ctx), jobCredentials(ctx.job, { username: 'ubuntu', password: 'ubuntu' }).password);
  writeDeviceInfo(ctx);
  return 0;
};

/** The oem_autoinstall job, checked whole: its provision_data, and the url route's job and files. */
function oemAutoinstallJob(ctx: PhaseContext): { data: OemAutoinstallProvision; image: ImageDeploy | undefined } {
  const data = oemAutoinstallProvision(ctx.job);
  return { data, image: data.url ? prepareImageDeploy(ctx, data) : undefined };
}

/** As upstream: the ISO route, then the url route, each when its keys are given. */
const oemAutoinstallProvisionPhase: PhaseFn = async (ctx) => {
  const { data, image } = oemAutoinstallJob(ctx);
  const config = oemAutoinstallConfigSchema.parse(ctx.device);
  if (usesIso(data)) await provisionThrough(ctx, controlHostConfig(ctx.device), OEM_METHOD, oemRequest(ctx, data));
  if (image) await provisionFromImage(ctx, image, config.oem_autoinstall_poll_seconds);
  if (!usesIso(data) && !data.url) ctx.print('no control_host_iso_url, control_host_iso_type or url in provision_data: nothing to provision');
  writeDeviceInfo(ctx);
  return 0;
};

export const control_host_kvm: DeviceType = {
  name: 'control_host_kvm',
  phases: { provision: kvmProvisionPhase },
  configSchema: controlHostConfigSchema,
  checkProvision: (ctx) => void kvmJob(ctx),
};

/** As upstream, control_host_iot keeps the device off while its control host reboots, and logs the serial console all through provisioning. */
export const control_host_iot: DeviceType = {
  name: 'control_host_iot',
  phases: { provision: iotProvisionPhase },
  configSchema: controlHostConfigSchema,
  managesDutPower: true,
  logsSerialThroughProvision: true,
  checkProvision: (ctx) => void iotProvision(ctx.job),
};

export const oem_autoinstall: DeviceType = {
  name: 'oem_autoinstall',
  phases: { provision: oemAutoinstallProvisionPhase },
  configSchema: oemAutoinstallConfigSchema,
  checkProvision: (ctx) => void oemAutoinstallJob(ctx),
};
