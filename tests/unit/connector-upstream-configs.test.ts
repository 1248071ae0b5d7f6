/**
 * Device configs and job data written for upstream's connector parse unchanged (shapes from
 * upstream's maas2 and oemscript tests and its MAAS storage documentation).
 */
import { parse } from 'yaml';
import { jobFileSchema } from '../../src/connector/config';
import { maas2ConfigSchema, maas2ProvisionSchema } from '../../src/connector/devices/maas2/config';
import { oemScriptConfigSchema, oemScriptProvisionSchema } from '../../src/connector/devices/oemscript/config';

describe("upstream's maas2 config and job data", () => {
  it('takes a default.yaml with upstream keys only, with upstream defaults', () => {
    const config = maas2ConfigSchema.parse(
      parse(`
device_ip: 10.10.10.10
agent_name: agent001
node_id: abc
maas_user: user
node_name: dut-maas-001
reset_efi: true
clear_tpm: false
serial_host: 10.10.10.2
serial_port: 3003
env:
  WPA_BG_SSID: lab-wifi
`),
    );
    expect(config).toMatchObject({ maas_user: 'user', node_id: 'abc', reset_efi: true, clear_tpm: false, timeout_min: 60, test_username: 'ubuntu', maas_poll_seconds: 60 });
  });

  it("takes the storage layout of upstream's documentation as it is", () => {
    const disks = parse(`
- {id: disk0, disk: 0, type: disk, ptable: gpt}
- {id: disk0-part1, device: disk0, type: partition, number: 1, size: 2G, alloc_pct: 80}
- {id: disk0-part1-format, type: format, volume: disk0-part1, fstype: ext4, label: nova-ephemeral}
- {id: disk0-part1-mount, device: disk1-part1-format, path: /, type: mount}
- {id: disk1, disk: 1, type: disk, ptable: gpt}
- {id: disk1-part1, device: disk1, type: partition, number: 1, size: 500M, alloc_pct: 10}
- {id: disk1-part1-format, type: format, volume: disk1-part1, fstype: fat32, label: efi}
- {id: disk1-part1-mount, device: disk1-part1-format, path: /boot/efi, type: mount}
- {id: disk1-part2, device: disk1, type: partition, number: 2, size: 1G, alloc_pct: 20}
- {id: disk1-part2-format, volume: disk1-part2, type: format, fstype: ext4, label: boot}
- {id: disk1-part2-mount, device: disk1-part2-format, path: /boot, type: mount}
- {id: disk1-part3, device: disk1, type: partition, number: 3, size: 10G, alloc_pct: 60}
- {id: disk1-part3-format, volume: disk1-part3, type: format, fstype: ext4, label: ceph}
- {id: disk1-part3-mount, device: disk1-part3-format, path: /data, type: mount}
`);
    expect(maas2ProvisionSchema.parse({ distro: 'jammy', kernel: 'hwe-22.04', user_data: '#cloud-config', ephemeral: true, disks })).toMatchObject({ distro: 'jammy', ephemeral: true });
  });
});

describe("upstream's oemscript config and job data", () => {
  it('takes device_ip, agent_name and reboot_script, and a job with url and test_data.test_password', () => {
    expect(oemScriptConfigSchema.parse({ device_ip: '192.168.1.100', agent_name: 'test-agent', reboot_script: ['snmpset -v1 -c private 1.2.3.4 1.3.6.1 i 1'] })).toMatchObject({
      reboot_script: ['snmpset -v1 -c private 1.2.3.4 1.3.6.1 i 1'],
      oem_boot_wait_seconds: 5400,
    });
    const job = jobFileSchema.parse({ job_id: 'test-job-123', provision_data: { url: 'http://example.com/test-image.iso' }, test_data: { test_username: 'ubuntu', test_password: 'insecure' } });
    expect(oemScriptProvisionSchema.parse(job.provision_data)).toMatchObject({ url: 'http://example.com/test-image.iso' });
  });
});
