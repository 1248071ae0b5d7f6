/**
 * A muxpi job end to end: the real agent program takes upstream's documented attachment job (the
 * image attached and named by use_attachment) from the dev server, unpacks the attachment, and
 * runs the charm's rendered tf-* scripts, which run the connector against the stand-in control
 * host and device (../helpers/sshdevice.ts). The device's serial console (a TCP console server)
 * is logged while it provisions.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar';
import { AgentLab } from '../helpers/agent-lab';
import { serialConsole, type SerialConsole } from '../helpers/serial-console';
import { RebootingDevice, SdMuxControlHost, makeCardImage, readCard, type CardImage } from '../helpers/sshdevice';
import { freePort, sshKeygen } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const IMAGE = 'ubuntu-22.04.4-preinstalled-desktop-arm64+raspi.img.xz';
const DESKTOP: CardImage = {
  image: 'jammy-desktop-raspi',
  partitions: [
    { label: 'system-boot', files: { 'config.txt': '' } },
    { label: 'writable', files: { 'usr/bin/firefox': '', 'etc/os-release': 'VERSION_ID="22.04"\n', 'etc/systemd/system/multi-user.target.wants/NetworkManager.service': '[Unit]\n', 'etc/sudoers.d/': '' } },
  ],
};

let lab: AgentLab;
let console_: SerialConsole;
const stoppers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  lab = await new AgentLab().start();
  console_ = await serialConsole('U-Boot 2022.01 (Raspberry Pi 4)\nStarting kernel ...\n', { hangUp: true });
});
afterAll(async () => {
  for (const stop of stoppers) await stop();
});

/** The attachments archive the CLI uploads: the image under provision/. */
async function attachmentsArchive(image: Buffer): Promise<Buffer> {
  const dir = tempDir('attachments');
  fs.mkdirSync(path.join(dir, 'provision'));
  fs.writeFileSync(path.join(dir, 'provision', IMAGE), image);
  await tar.c({ gzip: true, cwd: dir, file: path.join(dir, 'a.tar.gz') }, ['provision']);
  return fs.readFileSync(path.join(dir, 'a.tar.gz'));
}

it("the agent provisions a muxpi device from upstream's attachment job through tf-provision, logs its serial console, and runs test_cmds on the booted image (the console logged again)", async () => {
  const user = os.userInfo().username;
  const home = tempDir('agent-home');
  const key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
  const control = await new SdMuxControlHost().start(key.publicKey);
  control.insert({ image: 'old-system', partitions: [] });
  // The old card boots nothing; the new one boots once its test user is seeded (oem-config's preseed on a 22.04 desktop).
  const boots = (card: CardImage) => card.partitions.some((p) => p.label === 'writable' && 'preseed.cfg' in p.files);
  const device = await new RebootingDevice({ agentKey: key.publicKey, bootMedium: control.deviceSide(), boots }).start(await freePort(), false);
  stoppers.push(() => device.stop(), () => control.stop());
  fs.writeFileSync(path.join(home, '.ssh', 'config'), control.sshConfigBlock('localhost'));

  // default.yaml as upstream documents it for muxpi, plus where this lab's stand-ins are (ssh_port and the muxpi_* keys are ours).
  const queue = lab.startAgent({
    provisionType: 'muxpi',
    agentId: 'rpi-example',
    device: [
      'agent_name: rpi-example',
      'device_ip: 127.0.0.1',
      'control_host: localhost',
      `control_user: ${user}`,
      `test_device: ${control.testDevice}`,
      'serial_host: 127.0.0.1',
      `serial_port: ${console_.port}`,
      'reboot_script:',
      `- ${device.powerCycleCommand}`,
      'env:',
      '  WPA_AC_SSID: my-ac-ap',
      `ssh_port: ${device.port}`,
      `control_host_rest_port: ${await freePort()}`,
      `muxpi_mount_dir: ${control.mountDir}`,
      'muxpi_control_retry_seconds: 0',
      'muxpi_boot_poll_seconds: 0.5',
      'muxpi_boot_wait_seconds: 30',
      '',
    ].join('\n'),
    env: { PATH: process.env['PATH'], HOME: home },
  });

  const ssh = `ssh -p ${device.port} -i ${key.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
  const id = lab.submit(queue, {
    job: {
      provision_data: { attachments: [{ local: IMAGE }], use_attachment: IMAGE },
      test_data: { test_username: user, test_cmds: `${ssh} ${user}@$DEVICE_IP 'echo "hello from the booted image"'; echo "wifi: $WPA_AC_SSID"` },
    },
    attachments: await attachmentsArchive(execFileSync('xz', ['-c'], { input: makeCardImage(DESKTOP) })),
  });

  const result = await lab.result(id, 100_000);
  expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, test_status: 0, cleanup_status: 0 });
  expect(String(result['provision_output'])).toMatch(/Running testflinger-device-connector muxpi provision for rpi-example[\s\S]*Flashing Test image "ubuntu-22\.04\.4-preinstalled-desktop-arm64\+raspi\.img\.xz"[\s\S]*Image type detected: pi-desktop[\s\S]*Test image booted/);
  expect(String(result['provision_serial'])).toContain('U-Boot 2022.01 (Raspberry Pi 4)');
  expect(String(result['test_serial'])).toContain('U-Boot 2022.01 (Raspberry Pi 4)');
  expect(String(result['test_output'])).toMatch(/hello from the booted image\nwifi: my-ac-ap/);
  expect(device.events).toEqual(['power cycle', 'booted jammy-desktop-raspi']);
  const writable = readCard(control.deviceSide())?.partitions.find((p) => p.label === 'writable')?.files ?? {};
  expect(writable['preseed.cfg']).toMatch(/passwd\/username string ubuntu/);
  expect(writable['etc/systemd/system/oem-config.service']).toMatch(/oem-config-firstboot --automatic/);
});
