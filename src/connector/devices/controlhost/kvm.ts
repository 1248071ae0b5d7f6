/**
 * control_host_kvm: the control host installs an image on the device through its KVM (ProvisioningKVM).
 * The connector sends the image URL, the job's credentials, the robot tasks the control host
 * drives the installer with, the autoinstall settings, and the agent's public key. An OEM 22.04
 * restore (alloem_url, the desktop-jammy-oem preset) goes on from here (oem-login.ts).
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { describeIssues, type JobFile } from '../../config';
import { JobError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { agentPublicKey } from '../../ssh';
import { jobCredentials } from './config';
import { OEM_IMAGE_PASSWORD, OEM_IMAGE_USER } from './oem-login';
import { OEM_USER_DATA, oemStorageLayout } from './oem-user-data';

export const KVM_METHOD = 'ProvisioningKVM';
/** Upstream's preset whose image the control host only restores; its oemscript then installs the test image. */
export const JAMMY_OEM_PRESET = 'desktop-jammy-oem';

/** Upstream does not check image URLs (the control host fetches them); here they must at least be URLs, on one line. */
const imageUrl = z.string().url().refine((url) => !/[\s\x00-\x1f\x7f]/.test(url), 'a URL without spaces or control characters');
const commandList = z.array(z.string());

/** autoinstall_base_user_data: base64 of a YAML document, as upstream checks it. */
const baseUserData = z.string().superRefine((value, ctx) => {
  const text = value.replace(/\s/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'Provided `base_user_data` is not base64 encoded.' });
    return;
  }
  try {
    parseYaml(Buffer.from(text, 'base64').toString('utf8'));
  } catch {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'Provided `base_user_data` is not a valid YAML.' });
  }
});

/** The keys the control host defaults itself: forwarded only when the job sets them. */
export const KVM_OPTIONAL_KEYS = ['cmdline_append', 'skip_download', 'wait_until_ssh', 'live_image', 'ubuntu_sso_email', 'robot_retries', 'reboot_script', 'poweron_script'] as const;

export const kvmProvisionSchema = z
  .object({
    url: imageUrl.optional(),
    preset: z.string().min(1).optional(),
    alloem_url: imageUrl.optional(),
    oem: z.string().optional(),
    robot_tasks: z.array(z.string().min(1)).optional(),
    autoinstall_oem: z.boolean().optional(),
    autoinstall_base_user_data: baseUserData.optional(),
    autoinstall_storage_layout: z.string().optional(),
    provisioning_timeout: z.number().positive().nullish(),
    cmdline_append: z.string().optional(),
    skip_download: z.boolean().optional(),
    wait_until_ssh: z.boolean().optional(),
    live_image: z.boolean().optional(),
    ubuntu_sso_email: z.string().email().optional(),
    robot_retries: z.number().int().nonnegative().optional(),
    reboot_script: commandList.optional(),
    poweron_script: commandList.optional(),
  })
  .passthrough()
  .superRefine((data, ctx) => {
    // Without a preset, upstream needs robot_tasks, and an image url unless alloem_url is given.
    if (data.preset !== undefined) return;
    if (data.alloem_url === undefined && data.url === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['url'], message: 'Required (or a preset, or an alloem_url)' });
    if (data.robot_tasks === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['robot_tasks'], message: 'Required (unless a preset is given)' });
  });
export type KvmProvision = z.output<typeof kvmProvisionSchema>;

export function kvmProvision(job: JobFile): KvmProvision {
  const parsed = kvmProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data: ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  return parsed.data;
}

/**
 * Upstream's OEM 22.04 route: the control host only restores the OEM image (from alloem_url, or
 * the preset's), and the connector then logs in and installs the test image itself (oem-login.ts).
 */
export function restoresOemImage(data: KvmProvision): boolean {
  return data.alloem_url !== undefined || data.preset === JAMMY_OEM_PRESET;
}

/**
 * autoinstall_<name> keys as {<name>: value}; none given: null, as upstream sends. With
 * autoinstall_oem, the OEM user-data and its storage layout instead, and no other key.
 */
function autoinstallConf(data: Record<string, unknown>): Record<string, unknown> | null {
  if (data['autoinstall_oem']) return { base_user_data: Buffer.from(OEM_USER_DATA).toString('base64'), storage_layout: oemStorageLayout() };
  const conf = Object.fromEntries(Object.entries(data).filter(([key]) => key.includes('autoinstall_')).map(([key, value]) => [key.replaceAll('autoinstall_', ''), value]));
  return Object.keys(conf).length > 0 ? conf : null;
}

/** As upstream: the preset's OEM image comes with its own account; any other install uses the job's. */
function credentials(ctx: PhaseContext, oemImage: boolean): { username: string; password: string } {
  if (oemImage) return { username: OEM_IMAGE_USER, password: OEM_IMAGE_PASSWORD };
  const { username, password } = jobCredentials(ctx.job, { username: 'ubuntu', password: 'ubuntu' });
  return { username, password };
}

/** A preset forwards the job's keys as they are, but the autoinstall ones, which go in autoinstall_conf. */
function presetRequest(ctx: PhaseContext, data: KvmProvision): Record<string, unknown> {
  const given = data as Record<string, unknown>;
  const request: Record<string, unknown> = Object.fromEntries(Object.entries(given).filter(([key]) => !key.startsWith('autoinstall')));
  Object.assign(request, credentials(ctx, data.preset === JAMMY_OEM_PRESET));
  if (Object.keys(given).some((key) => key.startsWith('autoinstall'))) request['autoinstall_conf'] = autoinstallConf(given);
  if (data.preset === JAMMY_OEM_PRESET) {
    // The control host only restores the OEM image: `url` is the test image, for the OEM script.
    delete request['url'];
    if (data.alloem_url) {
      request['url'] = data.alloem_url;
      delete request['alloem_url'];
    }
  }
  return request;
}

/** The request's kwargs, key for key as upstream builds them. */
export function kvmRequest(ctx: PhaseContext, data: KvmProvision): Record<string, unknown> {
  const given = data as Record<string, unknown>;
  let request: Record<string, unknown>;
  if (data.preset !== undefined) request = presetRequest(ctx, data);
  else if (data.alloem_url !== undefined) request = { url: data.alloem_url, ...credentials(ctx, true), autoinstall_conf: autoinstallConf(given), robot_tasks: data.robot_tasks };
  else request = { url: data.url, ...credentials(ctx, false), autoinstall_conf: autoinstallConf(given), robot_tasks: data.robot_tasks };
  request['authorized_keys'] = [agentPublicKey('the provisioned system')];
  for (const key of KVM_OPTIONAL_KEYS) if (key in given) request[key] = given[key];
  return request;
}
