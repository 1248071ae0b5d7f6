/** netboot's default.yaml and job data: upstream's keys and defaults, and what is refused, by key. */
import { parse } from 'yaml';
import { jobFileSchema } from '../../src/connector/config';
import { netbootConfigSchema } from '../../src/connector/devices/netboot/config';
import { testPassword } from '../../src/connector/devices/sshboot/config';

const UPSTREAM_CONF = `
agent_name: netboot-01
device_ip: 10.3.0.7
test_device: /dev/sda
serial_host: 10.3.0.1
serial_port: 3010
select_master_script:
  - /usr/local/bin/set-pxe 10.3.0.7 network
select_test_script:
  - /usr/local/bin/set-pxe 10.3.0.7 disk
post_flash_cmds:
  - ssh root@10.3.0.1 "sync-bootloader 7" && echo done
reboot_script:
  - pdu-cycle 10.3.0.2 4
`;

describe('netboot default.yaml', () => {
  it("takes upstream's keys as they are, with upstream's user, imager port and waits", () => {
    expect(netbootConfigSchema.parse(parse(UPSTREAM_CONF))).toMatchObject({
      test_username: 'admin',
      test_device: '/dev/sda',
      post_flash_cmds: ['ssh root@10.3.0.1 "sync-bootloader 7" && echo done'],
      netboot_imager_port: 8989,
      master_boot_timeout_seconds: 600,
      boot_timeout_seconds: 900,
      boot_poll_seconds: 10,
      boot_settle_seconds: 60,
    });
  });

  it.each([
    ['test_device: /dev/sda&reboot=1', /^test_device: .* is not a device path/],
    ['netboot_imager_port: 0', /^netboot_imager_port: Number must be greater than or equal to 1/],
    ['post_flash_cmds: echo hi', /^post_flash_cmds: Expected array, received string/],
  ])('refuses %s naming the key', (line, message) => {
    const parsed = netbootConfigSchema.safeParse({ ...parse(UPSTREAM_CONF), ...parse(line) });
    expect(parsed.success).toBe(false);
    const issue = parsed.success ? undefined : parsed.error.issues[0];
    expect(`${issue?.path.join('.')}: ${issue?.message}`).toMatch(message);
  });
});

describe("netboot's test user", () => {
  it("defaults to upstream's admin/admin", () => {
    expect(testPassword(jobFileSchema.parse({}), 'admin')).toBe('admin');
  });
});
