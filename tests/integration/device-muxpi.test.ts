/**
 * muxpi through the phase scripts, against stand-ins (../helpers/sshdevice.ts): the control host
 * is a real sshd with stand-in mux, dd, lsblk and mount tools and a plain file as the card; the
 * device is a real sshd that goes away on a power cycle and comes back as another one when the
 * card holds a bootable image; images come from a local HTTP server. The agents' ssh config
 * reaches the control host by name, as an operator's ssh-config would.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { errorFile, agentWithJob, runPhase, type AgentDir } from '../helpers/phase-script';
import { ImageServer } from '../helpers/image-server';
import { RebootingDevice, SdMuxControlHost, makeCardImage, readCard, zstd, type CardImage, type ControlHostOptions } from '../helpers/sshdevice';
import { freePort, sshKeygen, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const user = os.userInfo().username;
const images = new ImageServer();
const stoppers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  await images.start();
});
afterAll(async () => {
  for (const stop of stoppers.splice(0)) await stop();
});

/** Test images, each as the partitions that tell its type apart. */
const OLD_SYSTEM: CardImage = { image: 'old-system', partitions: [{ label: 'writable', files: { 'etc/hostname': 'old\n', 'var/lib/cloud/seed/nocloud-net/user-data': '#cloud-config\n' } }] };
const CLASSIC: CardImage = {
  image: 'ubuntu-24.04-preinstalled-server-arm64+raspi',
  partitions: [
    { label: 'system-boot', files: { 'config.txt': '' } },
    { label: 'writable', files: { 'etc/os-release': 'VERSION_ID="24.04"\n', 'etc/cloud/cloud.cfg.d/99-fake_cloud.cfg': 'datasource_list: [None]\n' } },
  ],
};
const CORE20: CardImage = { image: 'ubuntu-core-22-arm64', partitions: [{ label: 'ubuntu-seed', files: { 'snaps/': '' } }, { label: 'ubuntu-boot', files: {} }] };
const PI_DESKTOP: CardImage = {
  image: 'ubuntu-25.04-preinstalled-desktop-arm64+raspi',
  partitions: [
    { label: 'system-boot', files: {} },
    {
      label: 'writable',
      files: { 'usr/bin/firefox': '', 'etc/os-release': 'VERSION_ID="25.04"\n', 'etc/systemd/system/multi-user.target.wants/NetworkManager.service': '[Unit]\n', 'etc/sudoers.d/': '', 'etc/cloud/cloud.cfg.d/99-fake_cloud.cfg': '' },
    },
  ],
};

/** A seeded card boots: the stand-in device checks that its first boot would have a user to log in as. */
function seeded(card: CardImage): boolean {
  const files = card.partitions.flatMap((p) => Object.keys(p.files).map((f) => `${p.label}/${f}`));
  return files.some((f) => /nocloud(-net)?\/user-data$|99_nocloud\.cfg$/.test(f));
}

interface Lab {
  home: string;
  key: KeyPair;
  control: SdMuxControlHost;
  device: RebootingDevice;
  env: Record<string, string>;
  dirs(provisionData: Record<string, unknown>, extraConf?: Record<string, unknown>): AgentDir;
}

async function lab(options: { control?: ControlHostOptions; boots?: (card: CardImage) => boolean; medium?: 'sd' | 'usb' } = {}): Promise<Lab> {
  const home = tempDir('agent-home');
  const key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
  const control = await new SdMuxControlHost(options.control).start(key.publicKey);
  control.insert(OLD_SYSTEM, options.medium);
  const device = await new RebootingDevice({ agentKey: key.publicKey, bootMedium: control.deviceSide(options.medium), boots: options.boots ?? seeded }).start(await freePort(), true);
  stoppers.push(() => device.stop(), () => control.stop());
  // The operator's ssh-config says where the control host's sshd is; its REST API (not there) is on a closed port.
  fs.writeFileSync(path.join(home, '.ssh', 'config'), control.sshConfigBlock('localhost'));
  const restPort = await freePort();
  const conf = (extra: Record<string, unknown>) => ({
    agent_name: 'rpi-1',
    device_ip: '127.0.0.1',
    ssh_port: device.port,
    control_host: 'localhost',
    control_user: user,
    control_host_rest_port: restPort,
    test_device: control.testDevice,
    reboot_script: [device.powerCycleCommand],
    muxpi_mount_dir: control.mountDir,
    muxpi_control_retry_seconds: 0,
    muxpi_boot_poll_seconds: 0.5,
    muxpi_boot_wait_seconds: 20,
    ...extra,
  });
  return {
    home,
    key,
    control,
    device,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home },
    dirs: (provisionData, extraConf = {}) => agentWithJob(conf(extraConf), { provision_data: provisionData, test_data: { test_username: user } }),
  };
}

/** The files of partition `label` on a card. */
function filesOf(card: CardImage | undefined, label: string): Record<string, string> {
  return card?.partitions.find((p) => p.label === label)?.files ?? {};
}

describe('muxpi provision', () => {
  it('switches the card to the control host, writes the image, seeds the test user, switches it back, power cycles the device and waits for the new system', async () => {
    const l = await lab();
    const url = images.add('classic.img.zst', zstd(makeCardImage(CLASSIC)));
    const run = await runPhase(l.dirs({ url }), 'muxpi', 'provision', l.env);
    expect(run).toMatchObject({ code: 0 });
    const dev = l.control.testDevice;
    const mnt = path.join(l.control.mountDir, 'rpi-1');
    expect(l.control.calls()).toEqual([
      'stm -ts',
      `sudo umount ${dev}`,
      `umount ${dev}`,
      `sudo dd of=${dev} bs=16M`,
      `dd of=${dev} bs=16M`,
      `sudo hdparm -z ${dev}`,
      `hdparm -z ${dev}`,
      `lsblk -o NAME,LABEL -J ${dev}`,
      `sudo mkdir -p ${mnt}/system-boot`,
      `sudo mount /dev/sda1 ${mnt}/system-boot`,
      `mount /dev/sda1 ${mnt}/system-boot`,
      `sudo mkdir -p ${mnt}/writable`,
      `sudo mount /dev/sda2 ${mnt}/writable`,
      `mount /dev/sda2 ${mnt}/writable`,
      `sudo mkdir -p ${mnt}/writable/var/lib/cloud/seed/nocloud-net`,
      `sudo tee ${mnt}/writable/var/lib/cloud/seed/nocloud-net/meta-data`,
      `sudo tee ${mnt}/writable/var/lib/cloud/seed/nocloud-net/user-data`,
      `sudo rm -f ${mnt}/writable/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg`,
      `sudo umount ${mnt}/system-boot`,
      `umount ${mnt}/system-boot`,
      `sudo umount ${mnt}/writable`,
      `umount ${mnt}/writable`,
      'stm -dut',
    ]);
    expect(l.control.side()).toBe('dut');
    const card = readCard(l.control.deviceSide());
    expect(card?.image).toBe(CLASSIC.image);
    const writable = filesOf(card, 'writable');
    expect(writable['var/lib/cloud/seed/nocloud-net/user-data']).toMatch(/^#cloud-config\npassword: ubuntu\n[\s\S]*ssh_pwauth: true/);
    expect(writable['var/lib/cloud/seed/nocloud-net/meta-data']).toBe('instance_id: cloud-image\n');
    expect(writable).not.toHaveProperty(['etc/cloud/cloud.cfg.d/99-fake_cloud.cfg']);
    expect(l.device.events).toEqual(['power cycle', `booted ${CLASSIC.image}`]);
    expect(run.out).toMatch(/Image type detected: ubuntu/);
    expect(run.out).toMatch(/Test image booted/);
    expect(images.requests).toContain('/classic.img.zst');
  });

  it('takes the image from an attachment and the switch commands from default.yaml; a Core 20+ image gets its cloud.cfg.d seed on ubuntu-seed', async () => {
    const l = await lab();
    const dirs = l.dirs({ use_attachment: 'core.img.xz' }, { control_switch_local_cmd: 'sd-mux-ctrl -v 0 --ts', control_switch_device_cmd: 'sd-mux-ctrl -v 0 --dut' });
    fs.mkdirSync(path.join(dirs.runDir, 'attachments', 'provision'), { recursive: true });
    fs.writeFileSync(path.join(dirs.runDir, 'attachments', 'provision', 'core.img.xz'), zstd(makeCardImage(CORE20)));
    const run = await runPhase(dirs, 'muxpi', 'provision', l.env);
    expect(run).toMatchObject({ code: 0 });
    const calls = l.control.calls();
    expect(calls[0]).toBe('sd-mux-ctrl -v 0 --ts');
    expect(calls[calls.length - 1]).toBe('sd-mux-ctrl -v 0 --dut');
    expect(filesOf(readCard(l.control.deviceSide()), 'ubuntu-seed')['data/etc/cloud/cloud.cfg.d/99_nocloud.cfg']).toMatch(/datasource_list: \[NoCloud, None\][\s\S]*sudo: "ALL=\(ALL\) NOPASSWD:ALL"/);
    expect(run.out).toMatch(/Image type detected: core20/);
  });

  it('with provision_data.media, drives the mux CLI of control_switch_local_cmd: both media to the control host, the chosen one written and set back to the device', async () => {
    const l = await lab({ medium: 'usb' });
    const url = images.add('desktop.img.zst', zstd(makeCardImage(PI_DESKTOP)));
    const run = await runPhase(l.dirs({ url, media: 'usb' }, { control_switch_local_cmd: 'muxctl sdwire set TS', test_device: undefined }), 'muxpi', 'provision', l.env);
    expect(run).toMatchObject({ code: 0 });
    const calls = l.control.calls();
    expect(calls.slice(0, 2)).toEqual(['muxctl sdwire plug_to_self', 'muxctl typecmux plug_to_self']);
    expect(calls).toContain(`dd of=${path.join(l.control.dir, 'dev', 'sdb')} bs=16M`);
    expect(calls[calls.length - 1]).toBe('muxctl typecmux set DUT');
    const writable = filesOf(readCard(l.control.deviceSide('usb')), 'writable');
    expect(writable['var/lib/cloud/seed/nocloud-net/user-data']).toMatch(/openssh-server/);
    expect(writable['etc/systemd/system/oem-config.target.wants/NetworkManager.service']).toBe('[Unit]\n');
    expect(writable['etc/sudoers.d/ubuntu']).toBe('ubuntu ALL=(ALL) NOPASSWD:ALL\n');
    expect(run.out).toMatch(/Image type detected: pi-desktop/);
  });

  it('reboots the control host and the device first through control_host_reboot_script (an SDWire without a mux CLI)', async () => {
    const l = await lab();
    const rebooted = path.join(l.home, 'control-host-rebooted');
    const url = images.add('classic-2.img.zst', zstd(makeCardImage(CLASSIC)));
    const dirs = l.dirs({ url }, { control_host_reboot_script: [`touch ${rebooted}`], control_host_reboot_timeout: 1 });
    const run = await runPhase(dirs, 'muxpi', 'provision', { ...l.env, DISABLE_CONTROL_HOST_POWERCYCLE: '1' });
    expect(run).toMatchObject({ code: 0 });
    expect(fs.existsSync(rebooted)).toBe(true);
    expect(l.device.events).toEqual(['power cycle', `booted ${OLD_SYSTEM.image}`, 'power cycle', `booted ${CLASSIC.image}`]);
  });

  it('with create_user false, writes the image and seeds nothing; boot_check_url (with $DEVICE_IP) decides the boot', async () => {
    const l = await lab({ boots: () => false });
    const url = images.add('plain.img.zst', zstd(makeCardImage(CLASSIC)));
    const check = images.add('booted', Buffer.from('ok')).replace('127.0.0.1', '$DEVICE_IP');
    const run = await runPhase(l.dirs({ url, create_user: false, boot_check_url: check }), 'muxpi', 'provision', l.env);
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toMatch(/Skipping test user creation/);
    expect(run.out).toContain(`Checking "${check.replace('$DEVICE_IP', '127.0.0.1')}" to confirm boot success`);
    expect(l.control.calls().some((c) => c.startsWith('lsblk') || c.startsWith('mount'))).toBe(false);
  });
});

describe('muxpi failures', () => {
  it('a card that fails half-way through the write fails the job (exit 1); the card goes back to the device, which is not reset', async () => {
    const l = await lab({ control: { failAfterBytes: 4096 } });
    const url = images.add('broken-write.img.zst', zstd(makeCardImage(CLASSIC)));
    const dirs = l.dirs({ url });
    const run = await runPhase(dirs, 'muxpi', 'provision', l.env);
    expect(run.code).toBe(1);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ProvisioningError', exception_message: expect.stringMatching(/Error while piping the test image to .* Input\/output error/) });
    expect(l.control.side()).toBe('dut');
    expect(l.control.calls()[l.control.calls().length - 1]).toBe('stm -dut');
    expect(l.device.events).toEqual([]);
  });

  it('an image whose download breaks half-way fails the job (exit 1) before the card is switched', async () => {
    const l = await lab();
    const url = images.add('cut.img.zst', zstd(makeCardImage(CLASSIC, 1024 * 1024)), { cut: true });
    const dirs = l.dirs({ url });
    const run = await runPhase(dirs, 'muxpi', 'provision', l.env);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/Downloading the test image from .* failed/);
    expect(l.control.calls()).toEqual([]);
  });

  it('a device that never boots the test image fails the job after muxpi_boot_wait_seconds (exit 1)', async () => {
    const l = await lab({ boots: () => false });
    const url = images.add('unbootable.img.zst', zstd(makeCardImage(CLASSIC)));
    const dirs = l.dirs({ url }, { muxpi_boot_wait_seconds: 3 });
    const run = await runPhase(dirs, 'muxpi', 'provision', l.env);
    expect(run.code).toBe(1);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ProvisioningError', exception_message: expect.stringMatching(/^Failed to boot test image!/) });
    expect(l.device.events).toEqual(['power cycle', 'did not boot']);
    expect(run.out).toMatch(/Error copying ssh key to device \(attempt 1 of 1\)/);
  });

  it('a write that takes longer than muxpi_flash_timeout_seconds is stopped and fails the job (exit 1); the card goes back to the device', async () => {
    const l = await lab({ control: { stallSeconds: 20 } });
    const url = images.add('slow.img.zst', zstd(makeCardImage(CLASSIC)));
    const dirs = l.dirs({ url }, { muxpi_flash_timeout_seconds: 2 });
    const started = Date.now();
    const run = await runPhase(dirs, 'muxpi', 'provision', l.env);
    expect(run.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(run.out).toMatch(/Timeout while piping the test image to .* using a timeout of 2s/);
    expect(l.control.side()).toBe('dut');
  });

  it('a reboot_script that fails is a recovery failure (exit 46): the device cannot be brought back', async () => {
    const l = await lab();
    const url = images.add('classic-3.img.zst', zstd(makeCardImage(CLASSIC)));
    const dirs = l.dirs({ url }, { reboot_script: ['false'] });
    const run = await runPhase(dirs, 'muxpi', 'provision', l.env);
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: expect.stringMatching(/reboot_script: "false" failed/) });
  });

  it.each([
    [{}, /provide "url" .* or "use_attachment"/],
    [{ url: 'http://x/a.img', media: 'nvme' }, /provision_data\.media: Invalid enum value/],
    [{ use_attachment: '../../etc/shadow' }, /provision_data\.use_attachment: .* is not a file name/],
    [{ use_attachment: 'missing.img' }, /that attachment doesn't exist: "missing.img"/],
  ])('refuses provision_data %j (exit 1) before the mux is touched', async (data, message) => {
    const l = await lab();
    const run = await runPhase(l.dirs(data), 'muxpi', 'provision', l.env);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(message);
    expect(l.control.calls()).toEqual([]);
  });

  it('refuses a default.yaml without control_host (exit 2), naming the key', async () => {
    const l = await lab();
    const run = await runPhase(l.dirs({ url: 'http://x/a.img' }, { control_host: undefined }), 'muxpi', 'provision', l.env);
    expect(run.code).toBe(2);
    expect(run.out).toMatch(/default\.yaml: control_host: Required/);
  });
});
