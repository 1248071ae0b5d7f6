/**
 * oem_autoinstall's url route through tf-provision, as upstream's provision-image.sh does it: on a
 * stand-in device (a real sshd on 127.0.0.1 whose sessions find stand-in lsblk, sudo, wget, file,
 * xorriso, mkfs.vfat, mount, rsync, mokutil and reboot first on PATH), the ISO is downloaded on the
 * device, checked to be an OEM image, and put on the reset partition with the job's cloud-configs
 * and a boot menu that starts the redeployment; the device reboots and is waited for.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { agentWithJob, runPhase, type PhaseRun } from '../helpers/phase-script';
import { sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let home: string;
let key: KeyPair;
const sshds: TestSshd[] = [];
beforeAll(() => {
  home = tempDir('agent-home');
  key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
});
afterAll(async () => {
  for (const sshd of sshds) await sshd.stopAndWait();
});

const ISO_URL = 'http://images.example/somerville-noble-oem-24.04a-20250101-42.iso';

/** A device whose disk is nvme0n1 (EFI p1 mounted, reset p2, root p3); `oemIso: false` serves an ISO without /sideloads. */
async function standInDevice(oemIso = true): Promise<{ sshd: TestSshd; log: string }> {
  const dir = tempDir('oem-image-device');
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  const log = path.join(dir, 'device.log');
  const script = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\nLOG=${log}\n${body}\n`, { mode: 0o755 });
  script('sudo', 'echo "sudo $*" >> $LOG\nexec "$@"');
  script(
    'lsblk',
    `case "$*" in
  "-n -l -o NAME,FSTYPE,MOUNTPOINT") printf 'nvme0n1\\nnvme0n1p1 vfat /boot/efi\\nnvme0n1p2 vfat\\nnvme0n1p3 ext4 /\\n' ;;
  "-n -o PARTUUID /dev/nvme0n1p2") echo 5d1e0c2a-02 ;;
  "-n -o MOUNTPOINT /dev/nvme0n1p1") echo /boot/efi ;;
esac`,
  );
  script('mokutil', 'echo "SecureBoot disabled"');
  script('wget', 'echo "wget $* rc=$(cat "$WGETRC" 2>/dev/null | tr "\\n" " ")" >> $LOG\nwhile [ $# -gt 0 ]; do [ "$1" = -O ] && out=$2; shift; done\necho ISO > "$out"');
  script('file', 'echo application/x-iso9660');
  const dirs = oemIso ? "'/cloud-configs/grub'\\n'/sideloads'" : "'/cloud-configs/grub'";
  script('xorriso', `case "$*" in *"-type d"*) printf "${dirs}\\n" ;; *) printf "'/casper/vmlinuz'\\n'/casper/initrd'\\n" ;; esac`);
  for (const name of ['mkfs.vfat', 'mount', 'umount', 'reboot']) script(name, `echo "${name} $*" >> $LOG`);
  // The ISO's content, as a loop mount would show it, lands on the "reset partition".
  script('rsync', 'echo "rsync $*" >> $LOG\nfor a; do dest=$a; done\nmkdir -p "$dest/boot/grub" "$dest/casper"');
  const sshd = await new TestSshd().start([key.publicKey], { sessionPath: bin });
  sshds.push(sshd);
  return { sshd, log };
}

function provision(sshd: TestSshd, job: Record<string, unknown>, attach: Record<string, string> = {}): Promise<PhaseRun> {
  const dirs = agentWithJob({ device_ip: '127.0.0.1', ssh_port: sshd.port, agent_name: 'oem-dut-2', oem_autoinstall_poll_seconds: 0.1 }, { ...job, test_data: { test_username: os.userInfo().username } });
  for (const [name, text] of Object.entries(attach)) {
    const file = path.join(dirs.runDir, 'attachments', 'provision', name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  }
  return runPhase(dirs, 'oem_autoinstall', 'provision', { HOME: home, PATH: process.env['PATH'] ?? '' });
}

const deviceLog = (log: string) => fs.readFileSync(log, 'utf8').trimEnd().split('\n');

it("puts the OEM ISO on the reset partition with the job's user-data and a redeploy boot menu, reboots, and waits for the device", async () => {
  const { sshd, log } = await standInDevice();
  const userData = '#cloud-config\nautoinstall:\n  version: 1\n';
  const run = await provision(sshd, { provision_data: { url: ISO_URL, user_data: 'my-user-data', token_file: '/creds/token' } }, { 'my-user-data': userData, 'creds/token': 'username: lab-bot\ntoken: s3cr3t-token\n' });
  expect(run).toMatchObject({ code: 0 });
  const iso = path.join(sshd.deviceHome, 'somerville-noble-oem-24.04a-20250101-42.iso');
  const lines = deviceLog(log);
  // Downloaded on the device, with the token from a wgetrc (not on wget's command line), removed afterwards.
  const wget = lines.find((l) => l.startsWith('wget ')) ?? '';
  expect(wget).toContain(`-O ${iso} ${ISO_URL}`);
  expect(wget).toMatch(/rc=user=lab-bot password=s3cr3t-token auth_no_challenge=on/);
  expect(wget.split(' rc=')[0]).not.toContain('s3cr3t-token');
  expect(fs.existsSync(path.join(sshd.deviceHome, '.testflinger-wgetrc'))).toBe(false);
  // The mounted EFI partition is unmounted; reset (p2) and EFI (p1) are formatted; the ISO goes onto reset.
  expect(lines.filter((l) => /^(umount|mkfs\.vfat|mount|rsync|reboot)/.test(l))).toEqual([
    'umount /dev/nvme0n1p1',
    'mkfs.vfat /dev/nvme0n1p2',
    'mkfs.vfat /dev/nvme0n1p1',
    `mount -o loop ${iso} ${sshd.deviceHome}/iso`,
    `mount /dev/nvme0n1p2 ${sshd.deviceHome}/reset`,
    `rsync -a ${sshd.deviceHome}/iso/ ${sshd.deviceHome}/reset`,
    'reboot',
  ]);
  const reset = path.join(sshd.deviceHome, 'reset');
  expect(fs.readFileSync(path.join(reset, 'cloud-configs', 'redeploy', 'user-data'), 'utf8')).toBe(userData);
  expect(fs.readFileSync(path.join(reset, 'cloud-configs', 'redeploy', 'meta-data'), 'utf8')).toBe('');
  const grub = fs.readFileSync(path.join(reset, 'boot', 'grub', 'grub.cfg'), 'utf8');
  expect(grub).toContain('menuentry "Start redeployment"');
  expect(grub).toContain('ds=nocloud\\;s=/cdrom/cloud-configs/redeploy nomodeset modprobe.blacklist=nouveau nouveau.modeset=0 autoinstall rp-partuuid=5d1e0c2a-02 ---');
  expect(run.out).toContain('Deployment will start after reboot');
  expect(run.out).toContain('is back online. Deployment is done.');
  expect(run.out).not.toContain('s3cr3t-token');
});

it('an ISO that is not an OEM image is removed from the device and fails the phase before any partition is touched', async () => {
  const { sshd, log } = await standInDevice(false);
  const run = await provision(sshd, { provision_data: { url: ISO_URL } });
  expect(run.code).toBe(1);
  expect(run.out).toContain('Only OEM Ubuntu images are supported: required directory /sideloads not found in ISO');
  const lines = deviceLog(log);
  expect(lines).toContain(`sudo rm -f ${path.join(sshd.deviceHome, 'somerville-noble-oem-24.04a-20250101-42.iso')}`);
  expect(lines.filter((l) => /^(mkfs|mount|umount|reboot)/.test(l))).toEqual([]);
});

it('a missing attachment, or a link in its place, fails the job before the device is touched', async () => {
  const { sshd, log } = await standInDevice();
  const missing = await provision(sshd, { provision_data: { url: ISO_URL, redeploy_cfg: 'grub/redeploy.cfg' } });
  expect(missing.code).toBe(1);
  expect(missing.out).toContain('attachments/provision/grub/redeploy.cfg file was not found in attachments');
  const outside = tempDir('outside');
  fs.writeFileSync(path.join(outside, 'user-data'), '#cloud-config\n');
  const dirs = agentWithJob({ device_ip: '127.0.0.1', ssh_port: sshd.port, oem_autoinstall_poll_seconds: 0.1 }, { provision_data: { url: ISO_URL, user_data: 'ud' } });
  fs.mkdirSync(path.join(dirs.runDir, 'attachments', 'provision'), { recursive: true });
  fs.symlinkSync(path.join(outside, 'user-data'), path.join(dirs.runDir, 'attachments', 'provision', 'ud'));
  const linked = await runPhase(dirs, 'oem_autoinstall', 'provision', { HOME: home, PATH: process.env['PATH'] ?? '' });
  expect(linked.code).toBe(1);
  expect(linked.out).toContain('attachments/provision/ud file was not found in attachments (or is not a regular file');
  expect(fs.existsSync(log)).toBe(false);
});
