/**
 * The OEM routes of the control-host family. control_host_kvm's OEM 22.04 route through tf-provision: the emulated control host restores
 * the OEM image (alloem_url, or the desktop-jammy-oem preset), then the connector logs in with
 * the image's account, sets the job's password, copies the agents' key, and installs the test
 * image with the OEM script `provision_data.oem` names. The device is a stand-in on PATH: `ssh`
 * and `ssh-copy-id` scripts that keep each account's password and whether it takes the key.
 * And oem_autoinstall's stock ISO, which the control host gets with the connector's own files.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EmulatedControlHost } from '../helpers/controlhost';
import { agentWithJob, runPhase, type AgentDir, type PhaseRun } from '../helpers/phase-script';
import { sshKeygen } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

let home: string;
let publicKey: string;
let host: EmulatedControlHost;
beforeAll(async () => {
  home = tempDir('agent-home');
  publicKey = sshKeygen(path.join(home, '.ssh', 'id_rsa')).publicKey;
  host = await new EmulatedControlHost({ presets: ['desktop-jammy-oem'] }).start();
});
afterAll(() => host.stop());

/** A device whose `ubuntu` account has `password`; the scripts log what they were asked. */
function standInDevice(password: string): { bin: string; lab: string } {
  const lab = tempDir('oem-device');
  const bin = path.join(lab, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(lab, 'password-ubuntu'), password);
  const script = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\nLAB=${lab}\n${body}\n`, { mode: 0o755 });
  // ssh ... -l <user> -- <host> <command>: `true` answers for a user that takes the key.
  script(
    'ssh',
    `while [ $# -gt 1 ]; do [ "$1" = -l ] && user=$2; shift; done
echo "ssh $user: $1" >> $LAB/ssh.log
case "$1" in
  true) [ -e $LAB/keyed-$user ] || { echo "Permission denied (publickey)" >&2; exit 255; } ;;
  "sudo chpasswd") IFS=: read -r name pw; printf '%s' "$pw" > $LAB/password-$name ;;
esac
exit 0`,
  );
  script(
    'ssh-copy-id',
    `for a; do target=$a; done; user=\${target%@*}
pw=$("$SSH_ASKPASS" "password: ")
echo "ssh-copy-id $*" >> $LAB/ssh.log
[ "$pw" = "$(cat $LAB/password-$user 2>/dev/null)" ] || { echo "Permission denied (password)" >&2; exit 1; }
touch $LAB/keyed-$user`,
  );
  return { bin, lab };
}

function provision(dirs: AgentDir, bin: string): Promise<PhaseRun> {
  return runPhase(dirs, 'control_host_kvm', 'provision', { HOME: home, PATH: `${bin}:${process.env['PATH']}` });
}

function deviceConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { device_ip: '127.0.0.1', agent_name: 'oem-dut-1', control_host: '127.0.0.1', control_host_rest_port: host.port, reboot_script: [], ...extra };
}

it("the desktop-jammy-oem preset: the control host restores as ubuntu/u, then the job's password is set and the agents' key taken; no test url, nothing installed", async () => {
  const device = standInDevice('u');
  const dirs = agentWithJob(deviceConfig(), { provision_data: { preset: 'desktop-jammy-oem', url: undefined }, test_data: { test_password: 'new-pw' } });
  const run = await provision(dirs, device.bin);
  expect(run).toMatchObject({ code: 0 });
  expect(host.provisions.at(-1)?.kwargs).toMatchObject({ preset: 'desktop-jammy-oem', username: 'ubuntu', password: 'u' });
  expect(host.provisions.at(-1)?.kwargs).not.toHaveProperty('url');
  expect(fs.readFileSync(path.join(device.lab, 'password-ubuntu'), 'utf8')).toBe('new-pw');
  expect(fs.existsSync(path.join(device.lab, 'keyed-ubuntu'))).toBe(true);
  expect(run.out).toContain('Provisioned with base `alloem` image, no test URL specified.');
  // The passwords went through SSH_ASKPASS and chpasswd's input: on no command line, in no output.
  const log = fs.readFileSync(path.join(device.lab, 'ssh.log'), 'utf8');
  expect(log).toContain('ssh ubuntu: sudo chpasswd');
  expect(log).not.toContain('new-pw');
  expect(run.out).not.toContain('new-pw');
});

it('alloem_url with a test image url and oem hp: after the restore and the login, the HP OEM script installs the test image', async () => {
  const device = standInDevice('u');
  // The stand-in never goes down when told to reboot: the OEM script's first wait fails, which shows it ran.
  const dirs = agentWithJob(deviceConfig({ oem_shutdown_wait_seconds: 1, oem_poll_seconds: 0.2 }), {
    provision_data: { alloem_url: 'http://images.example/alloem.iso', url: 'http://images.example/test.iso', oem: 'hp', robot_tasks: ['oem/restore.robot'] },
  });
  const run = await provision(dirs, device.bin);
  expect(host.provisions.at(-1)?.kwargs).toMatchObject({ url: 'http://images.example/alloem.iso', username: 'ubuntu', password: 'u', robot_tasks: ['oem/restore.robot'] });
  expect(run.out).toContain('Installing the test image with hp_oemscript');
  expect(run.out).toContain('rebooting the device before provisioning');
  expect(run.code).toBe(1);
  expect(run.out).toMatch(/did not go down for the reboot within 1s/);
});

it("an OEM image that refuses its own account's password fails the phase (exit 1) after one try", async () => {
  const device = standInDevice('changed-by-someone');
  const dirs = agentWithJob(deviceConfig(), { provision_data: { preset: 'desktop-jammy-oem' } });
  const run = await provision(dirs, device.bin);
  expect(run.code).toBe(1);
  expect(run.out).toContain('Failed configuring SSH on the DUT.');
  expect(run.out).toContain('attempt 1 of 1');
  expect(fs.readFileSync(path.join(device.lab, 'password-ubuntu'), 'utf8')).toBe('changed-by-someone');
});

it("oem_autoinstall with a stock ISO: the control host gets the connector's autoinstall files, the installed system takes the agents' key", async () => {
  const dirs = agentWithJob(deviceConfig(), { provision_data: { control_host_iso_url: 'http://images.example/noble-desktop-amd64.iso', control_host_iso_type: 'stock' } });
  const run = await runPhase(dirs, 'oem_autoinstall', 'provision', { HOME: home, PATH: process.env['PATH'] ?? '' });
  expect(run).toMatchObject({ code: 0 });
  const kwargs = host.provisions.at(-1)?.kwargs ?? {};
  expect(kwargs).toMatchObject({ control_host_iso_type: 'stock', username: 'ubuntu', password: 'insecure', meta_data_b64: '' });
  const userData = Buffer.from(String(kwargs['user_data_b64']), 'base64').toString('utf8');
  expect(userData).toContain(JSON.stringify(publicKey.trim()));
  expect(Buffer.from(String(kwargs['grub_cfg_b64']), 'base64').toString('utf8')).toContain('autoinstall ds=nocloud');
});
