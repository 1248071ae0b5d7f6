/**
 * muxpi in process: default.yaml and provision_data as upstream's connector takes them (a bad
 * one names its key), the mux CLI read from control_switch_local_cmd, the image type told from
 * the mounted card, and what each type gets seeded.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { jobFileSchema } from '../../src/connector/config';
import { JobError, UsageError } from '../../src/connector/errors';
import { muxCliCommand, muxpiConfig, muxpiConfigSchema, muxpiProvision, testDevice, usesMuxCli } from '../../src/connector/devices/muxpi/config';
import { ceOemIotRelease, ceOemIotType, detectImageType, osReleaseMajor, type ImageProbe } from '../../src/connector/devices/muxpi/imagetype';
import { seedPlan, type SeedStep } from '../../src/connector/devices/muxpi/seeding';
import { labelledPartitions } from '../../src/connector/devices/muxpi/storage';
import { openAttachment } from '../../src/connector/devices/muxpi/image';
import { tempDir } from '../helpers/tmp';

const BASE = { agent_name: 'rpi-1', device_ip: '10.0.0.5', control_host: '10.0.0.4', test_device: '/dev/sda' };

function config(extra: Record<string, unknown> = {}) {
  return muxpiConfig(muxpiConfigSchema.parse({ ...BASE, ...extra }));
}

function configError(extra: Record<string, unknown>): string {
  const parsed = muxpiConfigSchema.safeParse({ ...BASE, ...extra });
  if (parsed.success) throw new Error('accepted');
  return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

describe('default.yaml', () => {
  it("has upstream's defaults: control_user ubuntu, stm -ts / stm -dut, a 120 s control host reboot, 1200 s to boot", () => {
    expect(config()).toMatchObject({
      control_user: 'ubuntu',
      control_switch_local_cmd: 'stm -ts',
      control_switch_device_cmd: 'stm -dut',
      control_host_reboot_timeout: 120,
      reboot_script: [],
      post_provision_script: [],
      muxpi_mount_dir: '/mnt',
      muxpi_boot_wait_seconds: 1200,
      muxpi_boot_poll_seconds: 10,
      muxpi_control_retry_seconds: 60,
      muxpi_download_timeout_seconds: 1200,
    });
  });

  it("takes upstream's documented example as it is", () => {
    const doc = parse(`
agent_name: rpi-example
device_ip: 10.0.0.5
control_host: 10.0.0.4
test_device: /dev/sda
serial_host: 10.0.0.4
serial_port: 3003
reboot_script:
- snmpset -c private -v2c 10.0.0.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 0
- sleep 30
- snmpset -c private -v2c 10.0.0.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 1
env:
  DEVICE_IP: 10.0.0.5
  WPA_AC_SSID: my-ac-ap
  WPA_AC_PSK: mypassword
  OTHER_DEVICE_DETAIL: foo
`);
    expect(muxpiConfigSchema.parse(doc)).toMatchObject({ agent_name: 'rpi-example', test_device: '/dev/sda', serial_port: 3003, reboot_script: expect.arrayContaining(['sleep 30']), env: { WPA_AC_SSID: 'my-ac-ap' } });
  });

  it.each([
    [{ control_host: undefined }, /^control_host: Required/],
    [{ agent_name: undefined }, /^agent_name: Required/],
    [{ agent_name: '../rpi' }, /^agent_name: "..\/rpi" is not an agent name/],
    [{ control_user: '-oProxyCommand=x' }, /^control_user: .* is not a user name/],
    [{ test_device: 'sda' }, /^test_device: "sda" is not a block device path/],
    [{ test_device: '/dev/../etc/shadow' }, /^test_device: .* is not a block device path/],
    [{ test_device: '/dev/sda; reboot' }, /^test_device: .* is not a block device path/],
    [{ control_switch_local_cmd: 'stm -ts\nreboot' }, /^control_switch_local_cmd: one line/],
    [{ post_provision_script: 'sync' }, /^post_provision_script: Expected array/],
    [{ control_host_reboot_timeout: -1 }, /^control_host_reboot_timeout: Number must be greater than or equal to 0/],
  ])('refuses %j, naming the key', (extra, message) => {
    expect(configError(extra)).toMatch(message);
  });

  it('needs test_device only when the job names no medium: then its absence is a usage error naming it', () => {
    const c = config({ test_device: undefined });
    expect(() => testDevice(c)).toThrow(UsageError);
    expect(() => testDevice(c)).toThrow(/default\.yaml: test_device: Required/);
  });
});

describe('the mux CLI in control_switch_local_cmd', () => {
  it.each([
    ['sudo muxctl sdwire set TS', true, 'sudo muxctl'],
    ['sudo -n muxctl typecmux set TS', true, 'sudo -n muxctl'],
  ])('%j drives a mux CLI: %s, run as %j', (cmd, uses, cli) => {
    const c = config({ control_switch_local_cmd: cmd });
    expect(usesMuxCli(c)).toBe(uses);
    expect(muxCliCommand(c)).toBe(cli);
  });

  it.each(['stm -ts', 'sd-mux-ctrl -v 0 --ts', 'sdwire set TS'])('%j names no mux CLI: a job with a media is refused, naming the key', (cmd) => {
    expect(() => muxCliCommand(config({ control_switch_local_cmd: cmd }))).toThrow(/control_switch_local_cmd: must be a mux CLI command followed by "sdwire" or "typecmux"/);
  });

  it('an SDWire without a mux CLI is rebooted first (upstream reboots unless the command names sdwire or typecmux)', () => {
    expect(usesMuxCli(config())).toBe(false);
    expect(usesMuxCli(config({ control_switch_local_cmd: 'sdwire set TS' }))).toBe(true);
  });
});

describe('provision_data', () => {
  const provision = (data: Record<string, unknown>) => muxpiProvision(jobFileSchema.parse({ provision_data: data }));

  it('takes url or use_attachment; create_user defaults to true', () => {
    expect(provision({ url: 'http://images.example/rpi.img.xz' })).toMatchObject({ url: 'http://images.example/rpi.img.xz', create_user: true });
    expect(provision({ use_attachment: 'ubuntu-22.04.4-preinstalled-desktop-arm64+raspi.img.xz', create_user: false })).toMatchObject({ create_user: false });
  });

  it.each([
    [{}, /provide "url" .* or "use_attachment"/],
    [{ url: 'file:///etc/shadow' }, /provision_data\.url: the image: an http\(s\) URL/],
    [{ url: 'http://x/a b.img' }, /provision_data\.url: the image: an http\(s\) URL/],
    [{ use_attachment: 'a/b.img' }, /provision_data\.use_attachment: "a\/b.img" is not a file name/],
    [{ use_attachment: '..' }, /provision_data\.use_attachment: "\.\." is not a file name/],
    [{ url: 'http://x/a.img', media: 'emmc' }, /provision_data\.media: Invalid enum value. Expected 'sd' \| 'usb'/],
    [{ url: 'http://x/a.img', create_user: 'no' }, /provision_data\.create_user: Expected boolean/],
    [{ url: 'http://x/a.img', boot_check_url: 'ftp://$DEVICE_IP/' }, /provision_data\.boot_check_url: the boot check: an http\(s\) URL/],
  ])('refuses %j as the job\'s fault, naming the key', (data, message) => {
    expect(() => provision(data)).toThrow(JobError);
    expect(() => provision(data)).toThrow(message);
  });
});

/** A mounted card holding `paths` (and `files` with their text). */
function probe(paths: string[], files: Record<string, string> = {}): ImageProbe {
  return {
    read: async (p) => files[p],
    exists: async (p) => paths.includes(p) || Object.keys(files).includes(p),
    matchesDir: async (glob) => glob === 'writable/lib/firmware/*-tegra*/' && paths.some((p) => /^writable\/lib\/firmware\/[^/]+-tegra[^/]*$/.test(p)),
  };
}

describe('the image type, told from the mounted card', () => {
  it.each([
    ['iot-limerick-kria-classic-desktop-2204-x07-20230705-77', 2204, 'ce-oem-iot-before-24'],
    ['iot-pi-noble-classic-server-2404-20240601', 2404, 'ce-oem-iot-24-and-beyond'],
    ['iot-genio-core-24-20240601', 24, 'ce-oem-iot-24-and-beyond'],
    ['iot-genio-core-20-x', 20, 'ce-oem-iot-before-24'],
  ])('a ce-oem-iot build stamp %j is release %d: %s', async (stamp, release, type) => {
    expect(ceOemIotRelease(`${stamp}\n`)).toBe(release);
    expect(ceOemIotType(release)).toBe(type);
    expect(await detectImageType(probe(['writable/etc'], { 'writable/.disk/info': stamp }))).toBe(type);
  });

  it('a .disk/info without a build stamp is no ce-oem-iot image', () => {
    expect(ceOemIotRelease('Ubuntu 24.04 LTS "Noble Numbat" - Release arm64')).toBeUndefined();
  });

  it.each([
    [['writable/lib/firmware/nvidia-tegra234', 'writable/etc'], 'tegra'],
    [['writable/usr/bin/firefox', 'writable/etc'], 'pi-desktop'],
    [['writable/etc'], 'ubuntu'],
    [['writable/system-data'], 'core'],
    [['ubuntu-seed/snaps'], 'core20'],
    [['cloudimg-rootfs/etc/cloud/cloud.cfg'], 'ubuntu-cpc'],
    [['system-boot/config.txt'], 'unknown'],
  ])('a card holding %j is %s (upstream\'s checks, in upstream\'s order)', async (paths, type) => {
    expect(await detectImageType(probe(paths))).toBe(type);
  });

  it.each([
    ['VERSION_ID="25.04"\n', 25],
    ['NAME="Ubuntu"\nVERSION_ID="24.04"\n', 24],
    ['NAME="Ubuntu"\n', Number.NaN],
  ])('pi-desktop\'s release comes from os-release %j: %d', (text, major) => {
    expect(osReleaseMajor(text)).toBe(major);
  });
});

/** The paths a plan writes, relative to the mount directory. */
function written(steps: SeedStep[]): string[] {
  return steps.flatMap((s) => (s.kind === 'write' ? [s.path.replace('/mnt/rpi-1/', '')] : []));
}

describe('create_user: what each image type gets', () => {
  it.each([
    ['ubuntu', ['writable/var/lib/cloud/seed/nocloud-net/meta-data', 'writable/var/lib/cloud/seed/nocloud-net/user-data']],
    ['unknown', ['writable/var/lib/cloud/seed/nocloud-net/meta-data', 'writable/var/lib/cloud/seed/nocloud-net/user-data']],
    ['core', ['writable/system-data/var/lib/cloud/seed/nocloud-net/meta-data', 'writable/system-data/var/lib/cloud/seed/nocloud-net/user-data']],
    ['ubuntu-cpc', ['cloudimg-rootfs/var/lib/cloud/seed/nocloud-net/meta-data', 'cloudimg-rootfs/var/lib/cloud/seed/nocloud-net/user-data']],
    ['core20', ['ubuntu-seed/data/etc/cloud/cloud.cfg.d/99_nocloud.cfg']],
    ['tegra', ['writable/var/lib/cloud/seed/nocloud/user-data', 'writable/etc/sudoers.d/ubuntu']],
    ['ce-oem-iot-before-24', ['system-boot/user-data', 'writable/etc/sudoers.d/ubuntu', 'writable/var/lib/cloud/seed/nocloud-net/meta-data', 'writable/var/lib/cloud/seed/nocloud-net/user-data']],
    ['ce-oem-iot-24-and-beyond', ['writable/var/lib/cloud/seed/nocloud/user-data', 'writable/etc/sudoers.d/ubuntu', 'writable/var/lib/cloud/seed/nocloud-net/meta-data', 'writable/var/lib/cloud/seed/nocloud-net/user-data']],
  ] as const)('%s: %j', (type, paths) => {
    expect(written(seedPlan(type, '/mnt/rpi-1'))).toEqual(paths);
  });

  it('ubuntu classic loses the raspi config that hides the seed from cloud-init; tegra gets GRUB timeouts of 0', () => {
    expect(seedPlan('ubuntu', '/mnt/rpi-1')).toContainEqual({ kind: 'remove-fake-cloud-cfg', dir: '/mnt/rpi-1/writable/etc/cloud/cloud.cfg.d' });
    expect(seedPlan('tegra', '/mnt/rpi-1')).toContainEqual({ kind: 'grub-timeouts', root: '/mnt/rpi-1/writable' });
  });

  it('pi-desktop 25.04 and later are seeded through cloud-init; earlier ones through oem-config and a preseed; both start NetworkManager and get sudo', () => {
    const plucky = seedPlan('pi-desktop', '/mnt/rpi-1', 25);
    expect(written(plucky)).toEqual(['writable/var/lib/cloud/seed/nocloud-net/meta-data', 'writable/var/lib/cloud/seed/nocloud-net/user-data', 'writable/etc/sudoers.d/ubuntu']);
    const noble = seedPlan('pi-desktop', '/mnt/rpi-1', 24);
    expect(written(noble)).toEqual(['writable/etc/systemd/system/oem-config.service', 'writable/preseed.cfg', 'writable/etc/sudoers.d/ubuntu']);
    for (const plan of [plucky, noble]) {
      expect(plan).toContainEqual({ kind: 'copy', from: '/mnt/rpi-1/writable/etc/systemd/system/multi-user.target.wants/NetworkManager.service', toDir: '/mnt/rpi-1/writable/etc/systemd/system/oem-config.target.wants' });
    }
  });

  it('every seed makes the ubuntu user with password ubuntu (upstream\'s test_username and test_password defaults)', () => {
    for (const type of ['ubuntu', 'core20', 'tegra', 'ce-oem-iot-24-and-beyond', 'pi-desktop'] as const) {
      const texts = seedPlan(type, '/mnt/x', 25).flatMap((s) => (s.kind === 'write' && !s.path.endsWith('meta-data') && !s.path.includes('sudoers') ? [s.content] : []));
      expect(texts.length).toBeGreaterThan(0);
      for (const text of texts) expect(text).toMatch(/ubuntu:ubuntu|plain_text_passwd: ubuntu|passwd: "\$6\$/);
    }
  });
});

describe("the card's partitions, from lsblk -J", () => {
  it('mounts labelled partitions only; a name or label that is not a plain word is left out and said so', () => {
    const lines: string[] = [];
    const json = JSON.stringify({
      blockdevices: [{ name: 'sda', label: null, children: [{ name: 'sda1', label: 'system-boot' }, { name: 'sda2', label: 'writable' }, { name: 'sda3', label: null }, { name: 'sda4', label: '../../etc' }, { name: 'sda5', label: 'a b' }] }],
    });
    expect(labelledPartitions(json, (l) => lines.push(l))).toEqual([
      { name: 'sda1', label: 'system-boot' },
      { name: 'sda2', label: 'writable' },
    ]);
    expect(lines).toEqual([expect.stringMatching(/^partition "sda4" labelled "..\/..\/etc" is not mounted/), expect.stringMatching(/^partition "sda5" labelled "a b" is not mounted/)]);
  });

  it('a card without partitions has none; an answer that is not lsblk\'s fails', () => {
    expect(labelledPartitions('{"blockdevices": [{"name": "sda", "label": null}]}', () => undefined)).toEqual([]);
    expect(() => labelledPartitions('lsblk: /dev/sda: not a block device', () => undefined)).toThrow(/lsblk did not answer with JSON/);
  });
});

describe('use_attachment, read from the run directory (the job\'s ground)', () => {
  function runDirWith(make: (dir: string) => void): string {
    const runDir = tempDir('muxpi-attach');
    const dir = path.join(runDir, 'attachments', 'provision');
    fs.mkdirSync(dir, { recursive: true });
    make(dir);
    return runDir;
  }

  it('opens a regular file', () => {
    const runDir = runDirWith((dir) => fs.writeFileSync(path.join(dir, 'img.xz'), 'image'));
    const source = openAttachment(runDir, 'img.xz', config());
    expect(fs.readFileSync(source.fd, 'utf8')).toBe('image');
    source.close();
  });

  it.each([
    ['a link to a file outside', (dir: string) => fs.symlinkSync('/etc/shadow', path.join(dir, 'img.xz')), /is not a regular file/],
    ['a FIFO (refused at once, never waited on)', (dir: string) => execFileSync('mkfifo', [path.join(dir, 'img.xz')]), /is not a regular file/],
    ['a directory', (dir: string) => fs.mkdirSync(path.join(dir, 'img.xz')), /is not a regular file/],
  ])('refuses %s', (_what, make, expected) => {
    const runDir = runDirWith(make);
    expect(() => openAttachment(runDir, 'img.xz', config())).toThrow(expected);
  });

  it('refuses attachments/provision that is a link (to a directory the job does not own)', () => {
    const runDir = tempDir('muxpi-attach');
    fs.mkdirSync(path.join(runDir, 'attachments'));
    fs.symlinkSync('/etc', path.join(runDir, 'attachments', 'provision'));
    expect(() => openAttachment(runDir, 'hostname', config())).toThrow(/attachment doesn't exist/);
  });
});
