/** cm3's default.yaml: upstream's keys and defaults, and what is refused, by key. */
import { parse } from 'yaml';
import { cm3ConfigSchema } from '../../src/connector/devices/cm3/config';

const UPSTREAM_CONF = `
agent_name: rpi-example
device_ip: 10.4.0.20
control_host: 10.4.0.21
test_device: /dev/sda
serial_host: 10.4.0.21
serial_port: 3020
reboot_script:
  - snmpset -c private -v2c 10.4.0.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 0
  - sleep 30
  - snmpset -c private -v2c 10.4.0.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 1
env:
  DEVICE_IP: 10.4.0.20
`;

function issue(doc: unknown): string {
  const parsed = cm3ConfigSchema.safeParse(doc);
  if (parsed.success) return 'accepted';
  return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

describe('cm3 default.yaml', () => {
  it("takes upstream's example as it is, with upstream's control user and waits", () => {
    expect(cm3ConfigSchema.parse(parse(UPSTREAM_CONF))).toMatchObject({ control_host: '10.4.0.21', control_user: 'ubuntu', test_device: '/dev/sda', boot_timeout_seconds: 600, boot_poll_seconds: 10, boot_settle_seconds: 5 });
  });

  it.each([
    [{ control_host: undefined }, /^control_host: Required$/],
    [{ control_host: '-oProxyCommand=sh' }, /^control_host: "-oProxyCommand=sh" is not a host/],
    [{ control_user: 'root;reboot' }, /^control_user: "root;reboot" is not a user name/],
    [{ test_device: 'sda' }, /^test_device: "sda" is not a device path under \/dev/],
  ])('refuses %j naming the key', (change, message) => {
    expect(issue({ ...parse(UPSTREAM_CONF), ...change })).toMatch(message);
  });
});
