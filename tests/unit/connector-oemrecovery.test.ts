/** oemrecovery's default.yaml and job data: upstream's keys and defaults, and what is refused, by key. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jobFileSchema, loadDeviceConfig } from '../../src/connector/config';
import { oemRecoveryConfigSchema } from '../../src/connector/devices/oemrecovery/config';
import { testPassword } from '../../src/connector/devices/sshboot/config';
import { tempDir } from '../helpers/tmp';

function conf(text: string) {
  const file = path.join(tempDir('conf'), 'default.yaml');
  fs.writeFileSync(file, text);
  return () => loadDeviceConfig(file, oemRecoveryConfigSchema);
}

describe('oemrecovery default.yaml', () => {
  it("takes upstream's keys as they are, with upstream's waits (an hour, a look every 90 s)", () => {
    const config = conf(`
agent_name: uc-fde-1
device_ip: 10.1.1.5
reboot_script:
  - snmpset -c private -v2c 10.1.1.2 .1.3.6.1.4.1.13742.6.4.1.2.1.2.1.8 i 0
  - sleep 30
recovery_cmds:
  - sudo snap reboot --factory-reset
env:
  DEVICE_IP: 10.1.1.5
`)();
    expect(config).toMatchObject({ recovery_cmds: ['sudo snap reboot --factory-reset'], boot_timeout_seconds: 3600, boot_poll_seconds: 90, test_username: 'ubuntu' });
  });

  it('without recovery_cmds or reboot_script, has none of either', () => {
    expect(conf('device_ip: 10.1.1.5\n')()).toMatchObject({ recovery_cmds: [], reboot_script: [] });
  });

  it.each([
    ['recovery_cmds: sudo snap reboot\n', /default\.yaml: recovery_cmds: Expected array, received string/],
    ['recovery_cmds: ["  "]\n', /default\.yaml: recovery_cmds\[0\]: String must contain at least 1 character/],
    ['boot_timeout_seconds: -1\n', /default\.yaml: boot_timeout_seconds: Number must be greater than 0/],
  ])('refuses %j naming the key', (text, message) => {
    expect(conf(`device_ip: 10.1.1.5\n${text}`)).toThrow(message);
  });
});

describe("oemrecovery's test_password", () => {
  const job = (testData: unknown) => jobFileSchema.parse({ test_data: testData });
  it("is the job's, else upstream's default ubuntu", () => {
    expect(testPassword(job({ test_password: 's3cret pass' }), 'ubuntu')).toBe('s3cret pass');
    expect(testPassword(job({}), 'ubuntu')).toBe('ubuntu');
    expect(testPassword(job(undefined), 'admin')).toBe('admin');
  });

  it.each([['a\nb'], [''], [5]])('refuses %j naming the key, never the value', (password) => {
    expect(() => testPassword(job({ test_password: password }), 'ubuntu')).toThrow(/^testflinger\.json: test_data\.test_password: /);
    try {
      testPassword(job({ test_password: password }), 'ubuntu');
    } catch (error) {
      if (typeof password === 'string' && password) expect((error as Error).message).not.toContain(password);
    }
  });
});
