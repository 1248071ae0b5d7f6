/**
 * oem_autoinstall's `url` route, as upstream's connector and its provision-image.sh do it: the
 * device, running a system already, downloads the OEM ISO, which is checked to be an OEM image;
 * the ISO's content replaces the device's reset partition (and its EFI partition is wiped), with
 * the job's cloud-configs and a boot menu that starts the redeployment; the device reboots into
 * it and is waited for.
 *
 * Here each step is one SSH command (`runOnDevice`, every word quoted) as the test user with the
 * agents' key, instead of a shell script on the agent host; passwords reach ssh through
 * SSH_ASKPASS (copy-id.ts) and the download's credentials reach wget through a wgetrc on the
 * device (0600, removed afterwards), never a command line. The job's files come from
 * attachments/provision, never through a link.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConnectorError, JobError } from '../../errors';
import { describeTarget, type PhaseContext } from '../../phases';
import { sshRun } from '../../ssh';
import { copyToDevice, runCommand, runOnDevice, shellWords } from '../../steps';
import { readFileNoFollow } from '../../../common/fsutil';
import { quoted } from '../../../common/text';
import type { SshUser } from '../../validate';
import { oemScriptProvision } from '../oemscript/config';
import { jobCredentials } from './config';
import { copyAgentKey } from './copy-id';
import { DEFAULT_REDEPLOY_GRUB_CFG, DEFAULT_REDEPLOY_USER_DATA } from './oem-redeploy-files';

/** Upstream's waits: the redeployment (polled every 180 s) and the booted system (every 90 s). */
const REDEPLOY_WAIT_S = 3600;
const REDEPLOY_POLL_S = 180;
const BOOT_WAIT_S = 5400;
const BOOT_POLL_S = 90;
const DOWNLOAD_TIMEOUT_MS = 60 * 60_000;
const REBOOT_SCRIPT_TIMEOUT_MS = 120_000;
/** What the redeployed system's account takes before the job's password is known to it. */
const REDEPLOYED_PASSWORD = 'insecure';
const MAX_ATTACHED_FILE = 1024 * 1024;
/** oem-share's images need WebDAV credentials and rclone, which this connector does not drive. */
const WEBDAV_HOST = 'oem-share.canonical.com';

export interface DeployFiles {
  userData: string;
  redeployCfg: string;
  /** username/token for the download (the attached token_file), if any. */
  download?: { username: string; token: string };
}

interface Deploy {
  ctx: PhaseContext;
  user: SshUser;
  /** The user's home on the device (upstream assumes /home/<user>; here the device says). */
  home: string;
  password: string;
  url: string;
  iso: string;
  files: DeployFiles;
  pollSeconds: number | undefined;
}

function realDirectory(dir: string): boolean {
  try {
    return fs.lstatSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** An attached file by the name the job gave (upstream: relative to attachments/provision, a leading "/" dropped). */
function attachedFile(ctx: PhaseContext, key: string, name: unknown): string {
  const relative = typeof name === 'string' ? name.replace(/^\/+/, '') : '';
  const parts = relative.split('/');
  if (!relative || parts.some((part) => !/^[A-Za-z0-9._+-]+$/.test(part) || part === '.' || part === '..')) {
    throw new JobError(`provision_data.${key}: the name of a file in the provision attachments (letters, digits, "._+-", "/" between directories): ${quoted(name)}`);
  }
  const dirs = ['attachments', 'provision', ...parts.slice(0, -1)];
  let dir = ctx.runDir;
  for (const part of dirs) {
    dir = path.join(dir, part);
    if (!realDirectory(dir)) throw new JobError(`${path.join('attachments', 'provision', relative)} file was not found in attachments`);
  }
  try {
    return readFileNoFollow(path.join(dir, parts.at(-1) as string), MAX_ATTACHED_FILE).toString('utf8');
  } catch (error) {
    throw new JobError(`${path.join('attachments', 'provision', relative)} file was not found in attachments (or is not a regular file of at most 1 MiB): ${(error as Error).message}`);
  }
}

/** The token file's `username:` and `token:` lines, as upstream's script reads them. */
function downloadCredentials(text: string): { username: string; token: string } {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const username = field('username');
  const token = field('token');
  if (!username || !token || /[\s\0]/.test(username + token)) throw new JobError('Error: check username or token format in the token_file attachment ("username: ..." and "token: ..." lines)');
  return { username, token };
}

/** Everything the job attached, read (and checked) before the device is touched. */
function deployFiles(ctx: PhaseContext, data: Record<string, unknown>): DeployFiles {
  const userData = data['user_data'] === undefined || data['user_data'] === null ? DEFAULT_REDEPLOY_USER_DATA : attachedFile(ctx, 'user_data', data['user_data']);
  const redeployCfg = data['redeploy_cfg'] === undefined || data['redeploy_cfg'] === null ? DEFAULT_REDEPLOY_GRUB_CFG : attachedFile(ctx, 'redeploy_cfg', data['redeploy_cfg']);
  // Upstream checks that it is attached and does nothing else with it: the job's user-data may use it.
  if (data['authorized_keys'] !== undefined && data['authorized_keys'] !== null) attachedFile(ctx, 'authorized_keys', data['authorized_keys']);
  const token = data['token_file'] === undefined || data['token_file'] === null ? undefined : downloadCredentials(attachedFile(ctx, 'token_file', data['token_file']));
  return { userData, redeployCfg, ...(token ? { download: token } : {}) };
}

/** The ISO's file name on the device: the URL's last path segment. */
function isoName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
  if (!/^[A-Za-z0-9._+-]+$/.test(name) || name.startsWith('.')) throw new JobError(`provision_data.url: the image's file name must be letters, digits and "._+-": ${quoted(name)}`);
  return name;
}

async function tryKeyCopy(deploy: Deploy, password: string): Promise<boolean> {
  try {
    await copyAgentKey(deploy.ctx, deploy.user, password, 1);
    return true;
  } catch {
    return false;
  }
}

/** Polls (bounded) until `password` logs in, pausing `everySeconds` before each try, as upstream. */
async function awaitLogin(deploy: Deploy, password: string, wait: { seconds: number; everySeconds: number }, failure: string): Promise<void> {
  const every = deploy.pollSeconds ?? wait.everySeconds;
  const deadline = Date.now() + wait.seconds * 1000;
  while (Date.now() < deadline) {
    await deploy.ctx.sleep(every * 1000);
    if (await tryKeyCopy(deploy, password)) return;
  }
  throw new ConnectorError(failure);
}

/** Upstream's hard reset: each reboot_script command, split on spaces, no shell, 120 s each. */
async function hardReset(deploy: Deploy): Promise<void> {
  const script = deploy.ctx.device.reboot_script ?? [];
  if (script.length === 0) throw new ConnectorError(`${describeTarget(deploy.ctx, deploy.user)} cannot be reached and the device config has no reboot_script`);
  for (const command of script) {
    deploy.ctx.print(`Running ${quoted(command)}`);
    const result = await runCommand(command.trim().split(/\s+/), { timeoutMs: REBOOT_SCRIPT_TIMEOUT_MS });
    if (result.exitCode !== 0) throw new ConnectorError(`Error running reboot script: ${quoted(command)} exited ${result.exitCode}: ${quoted(result.output.trim())}`);
  }
}

function on(deploy: Deploy, words: readonly string[], timeoutMs?: number) {
  return runOnDevice(deploy.ctx, deploy.user, words, timeoutMs === undefined ? {} : { timeoutMs });
}

/** Steps upstream lets fail (`|| true`): their outcome is printed only. */
async function tolerated(deploy: Deploy, words: readonly string[], timeoutMs?: number): Promise<void> {
  const result = await sshRun(deploy.ctx.device, deploy.user, shellWords(words), undefined, timeoutMs);
  if (result.exitCode !== 0) deploy.ctx.print(`${words.join(' ')}: exit ${result.exitCode} (ignored)`);
}

/** The test user's home on the device, where the ISO and the staging directories go. */
async function deviceHome(ctx: PhaseContext, user: SshUser): Promise<string> {
  const home = (await runOnDevice(ctx, user, ['printenv', 'HOME'])).output.trim();
  if (!/^\/[A-Za-z0-9._/-]{0,255}$/.test(home) || home.split('/').includes('..')) throw new ConnectorError(`the home of ${describeTarget(ctx, user)} is not a plain path: ${quoted(home)}`);
  return home.replace(/\/+$/, '') || '/';
}

/** The ext4 partition mounted at the user's home or /, where the ISO is stored. */
async function storePartition(deploy: Deploy): Promise<string> {
  const { home } = deploy;
  const { output } = await on(deploy, ['lsblk', '-n', '-l', '-o', 'NAME,FSTYPE,MOUNTPOINT']);
  for (const line of output.split('\n')) {
    const [name, fstype, mountpoint] = line.trim().split(/\s+/);
    if (name && /^[A-Za-z0-9_-]+$/.test(name) && fstype === 'ext4' && (mountpoint === home || mountpoint === '/')) return `/dev/${name}`;
  }
  throw new ConnectorError(`Can't find partition to store ISO on ${describeTarget(deploy.ctx, deploy.user)}`);
}

/** As upstream: a "next" or "edge" ISO is unsigned and does not boot with Secure Boot on. */
async function refuseUnsignedUnderSecureBoot(deploy: Deploy): Promise<void> {
  const lower = deploy.iso.toLowerCase();
  if (!lower.includes('next') && !lower.includes('edge')) return;
  deploy.ctx.print(`Detected '${lower.includes('next') ? 'next' : 'edge'}' ISO image`);
  const state = await sshRun(deploy.ctx.device, deploy.user, 'sudo mokutil --sb-state 2>&1', undefined, 60_000);
  if (state.output.includes('SecureBoot enabled')) {
    throw new ConnectorError("With Secure Boot enabled, unsigned ISO will fail to boot after provision; disable Secure Boot on the DUT or use a 'production' or 'proposed' ISO");
  }
}

async function download(deploy: Deploy, isoPath: string): Promise<void> {
  const { home } = deploy;
  const rc = `${home}/.testflinger-wgetrc`;
  const credentials = deploy.files.download;
  deploy.ctx.print('Downloading ISO on DUT...');
  if (credentials) await copyToDevice(deploy.ctx, deploy.user, `user=${credentials.username}\npassword=${credentials.token}\nauth_no_challenge=on\n`, rc, '0600');
  try {
    const env = credentials ? ['env', `WGETRC=${rc}`] : [];
    await on(deploy, ['sudo', ...env, 'wget', '--tries=3', '--progress=dot:giga', '-O', isoPath, deploy.url], DOWNLOAD_TIMEOUT_MS);
  } catch (error) {
    throw new ConnectorError(`Downloading ISO on DUT failed: ${(error as Error).message}`);
  } finally {
    if (credentials) await tolerated(deploy, ['rm', '-f', rc]);
  }
  await on(deploy, ['sudo', 'test', '-e', isoPath]).catch(() => {
    throw new ConnectorError("ISO file doesn't exist after downloading.");
  });
}

/** An OEM ISO: ISO 9660, with the OEM media's cloud-configs and sideloads and a kernel and initrd. */
async function checkOemIso(deploy: Deploy, isoPath: string): Promise<void> {
  if ((await sshRun(deploy.ctx.device, deploy.user, 'command -v xorriso', undefined, 60_000)).exitCode !== 0) {
    deploy.ctx.print('Installing xorriso for ISO verification...');
    await on(deploy, ['sudo', 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'update', '-qq'], 10 * 60_000);
    await on(deploy, ['sudo', 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', 'xorriso'], 10 * 60_000);
  }
  const problems: string[] = [];
  const mime = await sshRun(deploy.ctx.device, deploy.user, shellWords(['sudo', 'file', '-b', '--mime-type', isoPath]), undefined, 60_000);
  if (mime.output.trim() !== 'application/x-iso9660') problems.push('not a valid ISO 9660 image');
  else {
    const listing = async (type: string) => (await sshRun(deploy.ctx.device, deploy.user, `${shellWords(['sudo', 'xorriso', '-indev', isoPath, '-find', '/', '-type', type])} 2>/dev/null`, undefined, 10 * 60_000)).output.split('\n').map((l) => l.trim());
    const dirs = await listing('d');
    const files = await listing('f');
    for (const dir of ['/cloud-configs/grub', '/sideloads']) if (!dirs.includes(`'${dir}'`)) problems.push(`required directory ${dir} not found in ISO`);
    for (const file of ['/casper/vmlinuz', '/casper/initrd']) if (!files.includes(`'${file}'`)) problems.push(`required file ${file} not found in ISO`);
  }
  if (problems.length === 0) return deploy.ctx.print('ISO verification passed');
  await tolerated(deploy, ['sudo', 'rm', '-f', isoPath]);
  throw new ConnectorError(`Only OEM Ubuntu images are supported: ${problems.join('; ')} (the ISO was removed from the DUT)`);
}

/** The partition's mount point, empty when it is not mounted. */
async function mountPoint(deploy: Deploy, partition: string): Promise<string> {
  return (await on(deploy, ['lsblk', '-n', '-o', 'MOUNTPOINT', partition])).output.trim();
}

/** The ISO and the cloud-configs onto the reset partition, which then boots the redeployment. */
async function writeResetPartition(deploy: Deploy, store: string, isoPath: string): Promise<void> {
  const { home } = deploy;
  // As upstream: the store partition's disk holds the EFI partition first and the reset partition second.
  const reset = `${store.slice(0, -1)}2`;
  const efi = `${store.slice(0, -1)}1`;
  const partUuid = (await on(deploy, ['lsblk', '-n', '-o', 'PARTUUID', reset])).output.trim();
  if (!/^[0-9A-Fa-f-]{1,64}$/.test(partUuid)) throw new ConnectorError(`the reset partition ${reset} has no usable PARTUUID: ${quoted(partUuid)}`);
  const staging = `${home}/redeploy/cloud-configs`;
  await on(deploy, ['mkdir', '-p', `${staging}/redeploy`, `${staging}/grub`]);
  await copyToDevice(deploy.ctx, deploy.user, deploy.files.userData, `${staging}/redeploy/user-data`);
  await copyToDevice(deploy.ctx, deploy.user, '', `${staging}/redeploy/meta-data`);
  await copyToDevice(deploy.ctx, deploy.user, deploy.files.redeployCfg, `${staging}/grub/redeploy.cfg`);
  for (const partition of [reset, efi]) if (await mountPoint(deploy, partition)) await on(deploy, ['sudo', 'umount', partition]);
  deploy.ctx.print(`Formatting ${reset} (reset) and ${efi} (EFI)`);
  await on(deploy, ['sudo', 'mkfs.vfat', reset]);
  await on(deploy, ['sudo', 'mkfs.vfat', efi]);
  await tolerated(deploy, ['mkdir', '-p', `${home}/iso`, `${home}/reset`]);
  await tolerated(deploy, ['sudo', 'mount', '-o', 'loop', isoPath, `${home}/iso`]);
  await tolerated(deploy, ['sudo', 'mount', reset, `${home}/reset`]);
  await tolerated(deploy, ['sudo', 'rsync', '-a', `${home}/iso/`, `${home}/reset`], DOWNLOAD_TIMEOUT_MS);
  await tolerated(deploy, ['sudo', 'mkdir', '-p', `${home}/reset/cloud-configs`]);
  await on(deploy, ['sudo', 'cp', '-r', `${staging}/redeploy/`, `${home}/reset/cloud-configs/`]);
  await on(deploy, ['sudo', 'cp', `${staging}/grub/redeploy.cfg`, `${home}/reset/boot/grub/grub.cfg`]);
  await on(deploy, ['sudo', 'sed', '-i', `s/RP_PARTUUID/${partUuid}/`, `${home}/reset/boot/grub/grub.cfg`]);
  await tolerated(deploy, ['sudo', 'reboot']);
  deploy.ctx.print('Deployment will start after reboot');
}

export interface ImageDeploy {
  url: string;
  iso: string;
  files: DeployFiles;
}

/** The url route's job checked and its files read, before anything is done. */
export function prepareImageDeploy(ctx: PhaseContext, data: Record<string, unknown>): ImageDeploy {
  const { url } = oemScriptProvision(ctx.job);
  if (new URL(url).hostname === WEBDAV_HOST) throw new JobError(`provision_data.url: images on ${WEBDAV_HOST} are not supported by this connector yet (upstream downloads them on the DUT with rclone and a WebDAV token_file)`);
  return { url, iso: isoName(url), files: deployFiles(ctx, data) };
}

/** Upstream's OemAutoinstall.provision, for provision_data.url. */
export async function provisionFromImage(ctx: PhaseContext, image: ImageDeploy, pollSeconds: number | undefined): Promise<void> {
  const { username, password } = jobCredentials(ctx.job, { username: 'ubuntu', password: 'insecure' });
  const user = username as SshUser;
  const deploy: Deploy = { ctx, user, home: '', password, ...image, pollSeconds };
  const failedBoot = `Device ${ctx.device.agent_name ?? ctx.device.device_ip} unreachable, provisioning failed! Failed to boot test image!`;
  if (!(await tryKeyCopy(deploy, password))) {
    await hardReset(deploy);
    await awaitLogin(deploy, password, { seconds: BOOT_WAIT_S, everySeconds: BOOT_POLL_S }, failedBoot);
  }
  deploy.home = await deviceHome(ctx, user);
  const isoPath = `${deploy.home}/${deploy.iso}`;
  const store = await storePartition(deploy);
  await refuseUnsignedUnderSecureBoot(deploy);
  await download(deploy, isoPath);
  await checkOemIso(deploy, isoPath);
  await writeResetPartition(deploy, store, isoPath);
  ctx.print(`Polling ssh connection status on ${ctx.device.device_ip} until timeout (${REDEPLOY_WAIT_S} seconds)...`);
  await awaitLogin(deploy, REDEPLOYED_PASSWORD, { seconds: REDEPLOY_WAIT_S, everySeconds: REDEPLOY_POLL_S }, `Timeout is reached, deployment is not finished on ${ctx.device.device_ip}.`);
  ctx.print(`${ctx.device.device_ip} is back online. Deployment is done.`);
  await awaitLogin(deploy, password, { seconds: BOOT_WAIT_S, everySeconds: BOOT_POLL_S }, failedBoot);
}
