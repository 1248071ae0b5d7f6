/**
 * Upstream's user creation on a freshly written image (dragonboard, cm3): a cloud-init NoCloud
 * seed written into the mounted image from the host that wrote it, so the image's first boot
 * creates the user ubuntu with password ubuntu and lets it log in by password.
 */
import type { PhaseContext } from '../../phases';
import { shellWords } from '../../steps';
import { checkOn, type SshTarget } from './remote';

/** The user every freshly seeded image gets; the job's test_password must match it (upstream's default does). */
const SEEDED_USER_DATA = ['#cloud-config', 'password: ubuntu', 'chpasswd:', '  list:', '    - ubuntu:ubuntu', '  expire: False', 'ssh_pwauth: True'];
export const NOCLOUD_META_DATA = 'instance_id: cloud-image\n';
export const NOCLOUD_USER_DATA = `${SEEDED_USER_DATA.join('\n')}\n`;
/** Ubuntu Core 20 and later read cloud-init config from the writable data partition instead of a seed. */
export const CORE20_CLOUD_CFG = [
  '#cloud-config',
  'datasource_list: [ NoCloud, None ]',
  'datasource:',
  '  NoCloud:',
  '    user-data: |',
  ...SEEDED_USER_DATA.map((line) => `      ${line}`),
  `    meta-data: |`,
  `      ${NOCLOUD_META_DATA.trim()}`,
  '',
].join('\n');

/** Writes `content` to `file` as root on the target (sudo mkdir -p, sudo tee), failing with `why`. */
export async function writeAsRoot(ctx: PhaseContext, target: SshTarget, file: string, content: string, why: string): Promise<void> {
  const dir = file.slice(0, file.lastIndexOf('/')) || '/';
  await checkOn(ctx, target, `sudo mkdir -p ${shellWords([dir])} && sudo tee ${shellWords([file])} >/dev/null`, 60_000, why, content);
}

/** The NoCloud seed under `base` (the mounted image's root: /mnt, or /mnt/system-data on Ubuntu Core). */
export async function seedNoCloud(ctx: PhaseContext, target: SshTarget, base: string): Promise<void> {
  const seed = `${base}/var/lib/cloud/seed/nocloud-net`;
  await writeAsRoot(ctx, target, `${seed}/meta-data`, NOCLOUD_META_DATA, 'Error creating user files');
  await writeAsRoot(ctx, target, `${seed}/user-data`, NOCLOUD_USER_DATA, 'Error creating user files');
}
