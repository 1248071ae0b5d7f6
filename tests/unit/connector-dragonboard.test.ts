/** dragonboard's default.yaml and job data: upstream's keys and defaults, and what is refused, by key. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jobFileSchema, loadDeviceConfig } from '../../src/connector/config';
import { dragonboardConfigSchema } from '../../src/connector/devices/dragonboard/config';
import { imageUrl } from '../../src/connector/devices/sshboot/config';
import { tempDir } from '../helpers/tmp';

const UPSTREAM_CONF = `
agent_name: dragonboard-01
device_ip: 10.1.2.3
test_device: /dev/mmcblk1
snappy_writable_partition: /dev/mmcblk1p10
serial_host: 10.1.2.1
serial_port: 3004
select_master_script:
  - /usr/local/bin/usbsel 10.1.2.1 1 usb
select_test_script:
  - /usr/local/bin/usbsel 10.1.2.1 1 sd
reboot_script:
  - snmpset -c private -v2c 10.1.2.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 0
  - sleep 10
  - snmpset -c private -v2c 10.1.2.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 1
`;

function load(text: string) {
  const file = path.join(tempDir('conf'), 'default.yaml');
  fs.writeFileSync(file, text);
  return () => loadDeviceConfig(file, dragonboardConfigSchema);
}

describe('dragonboard default.yaml', () => {
  it("takes upstream's keys as they are, with upstream's user and waits", () => {
    expect(load(UPSTREAM_CONF)()).toMatchObject({
      test_device: '/dev/mmcblk1',
      snappy_writable_partition: '/dev/mmcblk1p10',
      serial_port: 3004,
      select_test_script: ['/usr/local/bin/usbsel 10.1.2.1 1 sd'],
      master_username: 'linaro',
      master_boot_timeout_seconds: 300,
      boot_timeout_seconds: 600,
      boot_poll_seconds: 10,
      boot_settle_seconds: 60,
    });
  });

  it.each([
    ['test_device', 'test_device: /dev/../etc/shadow', /default\.yaml: test_device: "\/dev\/\.\.\/etc\/shadow" is not a device path under \/dev/],
    ['test_device', 'test_device: /tmp/card', /default\.yaml: test_device: "\/tmp\/card" is not a device path/],
    ['test_device', 'test_device: "/dev/sda; reboot"', /test_device: ".*" is not a device path/],
    ['snappy_writable_partition', 'snappy_writable_partition: ""', /default\.yaml: snappy_writable_partition: "" is not a device path/],
    ['master_username', 'master_username: -oProxyCommand=x', /default\.yaml: master_username: "-oProxyCommand=x" is not a user name/],
    ['serial_port', 'serial_port: 70000', /default\.yaml: serial_port: Number must be less than or equal to 65535/],
  ])('refuses a bad %s naming it', (key, line, message) => {
    const text = UPSTREAM_CONF.split('\n').filter((l) => !l.startsWith(`${key}:`)).join('\n');
    expect(load(`${text}\n${line}\n`)).toThrow(message);
  });

  it('needs the card and its writable partition', () => {
    expect(load('device_ip: 10.1.2.3\n')).toThrow(/default\.yaml: test_device: Required/);
  });
});

describe("dragonboard's provision_data.url", () => {
  const job = (data: unknown) => jobFileSchema.parse({ provision_data: data });
  it('is an http(s) URL', () => {
    expect(imageUrl(job({ url: 'http://images.lab/core-22-arm64.img.xz' }))).toBe('http://images.lab/core-22-arm64.img.xz');
  });
  it.each([[{}, /provision_data\.url: Required/], [{ url: 'ftp://x/y' }, /provision_data\.url: "ftp:\/\/x\/y" is not an http\(s\) URL/]])('refuses %j naming the key', (data, message) => {
    expect(() => imageUrl(job(data))).toThrow(message);
  });
});
