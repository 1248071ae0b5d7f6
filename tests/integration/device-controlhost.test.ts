/**
 * The control-host family through the phase scripts (tf-provision runs
 * `testflinger-device-connector <type> provision -c default.yaml testflinger.json`), against the
 * emulated control host on 127.0.0.1, with device configs and jobs shaped as upstream's tests
 * and docs write them.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmulatedControlHost, type ControlHostBehaviour } from '../helpers/controlhost';
import { agentWithJob, CONNECTOR, errorFile, runPhase, type AgentDir, type PhaseRun } from '../helpers/phase-script';
import { serialConsole } from '../helpers/serial-console';
import { freePort, sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { eventually, tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

let home: string;
let key: KeyPair;
const stops: (() => Promise<void>)[] = [];
beforeAll(() => {
  home = tempDir('agent-home');
  key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
});
afterAll(async () => {
  for (const stop of stops) await stop();
});

async function controlHost(behaviour: Partial<ControlHostBehaviour> = {}): Promise<EmulatedControlHost> {
  const host = await new EmulatedControlHost(behaviour).start();
  stops.push(() => host.stop());
  return host;
}

/** default.yaml as upstream's control-host tests write it, pointed at the emulator's port. */
function deviceConfig(port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { device_ip: '127.0.0.1', agent_name: 'lab-dut-7', control_host: '127.0.0.1', control_host_rest_port: port, reboot_script: ['snmpset -c private -v2c 10.0.0.2 .1.3.6.1 i 0'], env: { CID: '202507-01234' }, ...extra };
}

function provision(dirs: AgentDir, type: string, pathFirst?: string): Promise<PhaseRun> {
  const PATH = [pathFirst, process.env['PATH']].filter(Boolean).join(':');
  return runPhase(dirs, type, 'provision', { HOME: home, PATH });
}

const KVM_JOB = {
  provision_data: { url: 'http://cdimage.example/noble-desktop-amd64.iso', robot_tasks: ['kvm/login.robot', 'kvm/install.robot'], autoinstall_storage_layout: 'lvm', cmdline_append: 'quiet', provisioning_timeout: 1200 },
  test_data: { test_username: 'tester', test_password: 'secret-pw' },
};

describe('control_host_kvm', () => {
  it("sends upstream's ProvisioningKVM request, shows the control host's log, and succeeds when its job completes", async () => {
    const host = await controlHost({ logs: [{ level: 'INFO', message: 'booting the installer over KVM' }, { level: 'INFO', message: 'install finished' }] });
    const dirs = agentWithJob(deviceConfig(host.port), KVM_JOB);
    const run = await provision(dirs, 'control_host_kvm');
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toMatch(/\[control-host\] booting the installer over KVM\n\[control-host\] install finished\n/);
    expect(host.calls).toEqual(['POST /api/v1/system/setup/provisioning', 'POST /api/v1/provision', 'GET /api/v1/provision/job-1/logs', 'GET /api/v1/provision/job-1']);
    expect(host.provisions).toEqual([
      {
        method: 'ProvisioningKVM',
        args: [],
        kwargs: {
          url: 'http://cdimage.example/noble-desktop-amd64.iso',
          username: 'tester',
          password: 'secret-pw',
          autoinstall_conf: { storage_layout: 'lvm' },
          robot_tasks: ['kvm/login.robot', 'kvm/install.robot'],
          authorized_keys: [`${key.publicKey}\n`],
          cmdline_append: 'quiet',
          reboot_script: ['snmpset -c private -v2c 10.0.0.2 .1.3.6.1 i 0'],
          poweron_script: null,
          poweroff_script: null,
          agent_name: 'lab-dut-7',
          cid: '202507-01234',
          device_ip: '127.0.0.1',
        },
      },
    ]);
    // The password is the control host's to use: never in the phase output.
    expect(run.out).not.toContain('secret-pw');
    expect(JSON.parse(fs.readFileSync(path.join(dirs.runDir, 'device-info.json'), 'utf8'))).toEqual({ device_info: { device_ip: '127.0.0.1', agent_name: 'lab-dut-7' } });
  });

  it('a job without robot_tasks fails (exit 1) naming the key, before the control host hears anything', async () => {
    const host = await controlHost();
    const dirs = agentWithJob(deviceConfig(host.port), { provision_data: { url: 'http://cdimage.example/x.iso' } });
    const run = await provision(dirs, 'control_host_kvm');
    expect(run.code).toBe(1);
    expect(run.out).toContain('testflinger.json: provision_data.robot_tasks: Required (unless a preset is given)');
    expect(host.calls).toEqual([]);
  });

  it("a provisioning that fails on the control host fails the phase (exit 1) with the control host's error", async () => {
    const host = await controlHost({ outcome: 'failed', error: 'robot task kvm/install.robot failed: no DHCP lease' });
    const dirs = agentWithJob(deviceConfig(host.port), KVM_JOB);
    const run = await provision(dirs, 'control_host_kvm');
    expect(run.code).toBe(1);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_message: 'robot task kvm/install.robot failed: no DHCP lease' });
  });

  it('an unreachable control host fails the phase (exit 1); the device stays online', async () => {
    const dirs = agentWithJob(deviceConfig(await freePort()), KVM_JOB);
    const run = await provision(dirs, 'control_host_kvm');
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/POST http:\/\/127\.0\.0\.1:\d+\/api\/v1\/provision failed: fetch failed: .*ECONNREFUSED/);
  });

  it('a device config without control_host is a usage error (exit 2) naming the key', async () => {
    const config = deviceConfig(8000);
    delete config['control_host'];
    const run = await provision(agentWithJob(config, KVM_JOB), 'control_host_kvm');
    expect(run.code).toBe(2);
    expect(run.out).toMatch(/default\.yaml: control_host: Required/);
  });

  it('prints each log entry as the control host sends it, not at the end (run directly as an agent conf would)', async () => {
    const host = await controlHost({ logs: [{ level: 'INFO', message: 'first entry' }, { level: 'INFO', message: 'second entry' }], entryMs: 800 });
    const dirs = agentWithJob(deviceConfig(host.port), KVM_JOB);
    const child = spawn(process.execPath, [CONNECTOR, 'control_host_kvm', 'provision', '-c', path.join(dirs.agentDir, 'default.yaml'), 'testflinger.json'], { cwd: dirs.runDir, env: { HOME: home } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await eventually(() => out.includes('[control-host] first entry'), 'the first entry in the output', 20_000);
    expect(out).not.toContain('second entry');
    expect(host.jobStatus('job-1')).toBe('running');
    expect(await exited).toBe(0);
    expect(out).toContain('[control-host] second entry');
  });
});

describe('control_host_iot', () => {
  const PLAN = { config: { project_name: 'core24', username: 'admin', password: 'admin' }, run_stage: [{ initial_login: { method: 'system-user' } }, { deploy: { utility: 'utp_com' } }] };

  it("power cycles the control host (the DUT off meanwhile), sends upstream's ProvisioningIoT request with the plan's credentials replaced by the job's, then copies the agents' key with the job's password", async () => {
    const lab = tempDir('iot-lab');
    const host = await controlHost({ powerOnFlag: path.join(lab, 'power-on') });
    const power = { control_host_reboot_script: [`touch ${path.join(lab, 'power-on')}`], control_host_offline_wait_seconds: 0, poweroff_script: [`touch ${path.join(lab, 'dut-off')}`], poweron_script: [`touch ${path.join(lab, 'dut-on')}`] };
    // The provisioned device does not take the agents' key yet.
    const sshd = await new TestSshd().start([]);
    stops.push(() => sshd.stopAndWait());
    const user = os.userInfo().username;
    // A stand-in ssh-copy-id (the test's sshd has no password logins): it records its arguments,
    // asks SSH_ASKPASS for the password as ssh would, and installs the key when it is right.
    const bin = path.join(lab, 'bin');
    fs.mkdirSync(bin);
    const args = path.join(lab, 'copy-id.args');
    fs.writeFileSync(
      path.join(bin, 'ssh-copy-id'),
      `#!/bin/sh\nprintf '%s\\n' "$@" > ${args}\npw=$("$SSH_ASKPASS" "password: ")\n[ "$pw" = pw ] || { echo "Permission denied (password)" >&2; exit 1; }\nwhile [ $# -gt 0 ]; do [ "$1" = -i ] && key=$2; shift; done\ncat "$key" >> ${sshd.deviceHome}/.ssh/authorized_keys\n`,
      { mode: 0o755 },
    );
    const dirs = agentWithJob(deviceConfig(host.port, { ssh_port: sshd.port, provision_ssh_wait: 20, ...power }), {
      provision_data: { urls: ['https://images.example/core24-pi.img.xz'], provision_plan: PLAN },
      test_data: { test_username: user, test_password: 'pw' },
    });
    const run = await provision(dirs, 'control_host_iot', bin);
    expect(run).toMatchObject({ code: 0 });
    expect(host.provisions[0]?.kwargs).toMatchObject({
      username: user,
      password: 'pw',
      preset: null,
      preset_kwargs: null,
      custom_provision_plan: { ...PLAN, config: { project_name: 'core24', username: user, password: 'pw' } },
      urls: ['https://images.example/core24-pi.img.xz'],
      agent_name: 'lab-dut-7',
    });
    expect(run.out).toContain("Copying the agent's SSH public key to the DUT.");
    const copyArgs = fs.readFileSync(args, 'utf8').trimEnd().split('\n');
    expect(copyArgs).toEqual(expect.arrayContaining(['-f', '-i', path.join(home, '.ssh', 'id_rsa.pub'), 'StrictHostKeyChecking=no', '-p', String(sshd.port), `${user}@127.0.0.1`]));
    expect(copyArgs).not.toContain('pw');
    expect(fs.readFileSync(path.join(sshd.deviceHome, '.ssh', 'authorized_keys'), 'utf8')).toContain(key.publicKey);
    expect(fs.readdirSync(lab).sort()).toEqual(['bin', 'copy-id.args', 'dut-off', 'dut-on']);
    expect(host.calls.slice(0, 4)).toEqual(['POST /api/v1/system/poweroff', 'GET /health', 'POST /api/v1/system/setup/provisioning', 'POST /api/v1/provision']);
    expect(host.boots).toBe(1);
  });

  it('a console-conf login without ubuntu_sso_email, or a malformed url, fails the job naming it; nothing is sent', async () => {
    const host = await controlHost();
    const consoleConf = { ...PLAN, run_stage: [{ initial_login: { method: 'console-conf' } }] };
    const noEmail = await provision(agentWithJob(deviceConfig(host.port), { provision_data: { url: 'https://images.example/a.img', provision_plan: consoleConf } }), 'control_host_iot');
    expect(noEmail.code).toBe(1);
    expect(noEmail.out).toContain('provision_data.ubuntu_sso_email is required when initial login using console-conf');
    const badUrl = await provision(agentWithJob(deviceConfig(host.port), { provision_data: { urls: ['not a url'], preset: 'core24' } }), 'control_host_iot');
    expect(badUrl.code).toBe(1);
    expect(badUrl.out).toContain('provision_data: url format is not correct: "not a url"');
    expect(host.calls).toEqual([]);
  });

  it("with agent_ssh_access false, a preset job ends when the control host is done; the device's serial console is logged meanwhile", async () => {
    const host = await controlHost();
    const consoleServer = await serialConsole('U-Boot 2024.01 (core24)\r\nStarting kernel ...\r\n');
    const serial = { serial_host: '127.0.0.1', serial_port: consoleServer.port };
    const dirs = agentWithJob(deviceConfig(host.port, serial), { provision_data: { preset: 'core24', preset_kwargs: { channel: 'edge' }, url: 'https://images.example/a.img', agent_ssh_access: false } });
    const run = await provision(dirs, 'control_host_iot');
    expect(run).toMatchObject({ code: 0 });
    expect(host.provisions[0]?.kwargs).toMatchObject({ username: 'ubuntu', password: 'ubuntu', preset: 'core24', preset_kwargs: { channel: 'edge' }, urls: ['https://images.example/a.img'] });
    expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toBe('U-Boot 2024.01 (core24)\r\nStarting kernel ...\r\n');
    expect(run.out).toContain('Successfully connected to serial logging server');
  });
});

describe('oem_autoinstall', () => {
  it("flashes the job's ISO through the control host (ProvisioningOEM), with upstream's defaults", async () => {
    const host = await controlHost();
    const dirs = agentWithJob(deviceConfig(host.port), { provision_data: { control_host_iso_url: 'http://oem.example/somerville-noble.iso', control_host_iso_type: 'bootstrap' } });
    const run = await provision(dirs, 'oem_autoinstall');
    expect(run).toMatchObject({ code: 0 });
    expect(host.provisions[0]).toMatchObject({
      method: 'ProvisioningOEM',
      kwargs: {
        control_host_iso_url: 'http://oem.example/somerville-noble.iso',
        control_host_iso_type: 'bootstrap',
        update_user_data: false,
        device_ip: '127.0.0.1',
        username: 'ubuntu',
        password: 'insecure',
        reboot_script: ['snmpset -c private -v2c 10.0.0.2 .1.3.6.1 i 0'],
        meta_data_b64: null,
        user_data_b64: null,
        grub_cfg_b64: null,
      },
    });
  });

  it("an ISO type upstream does not know fails the job, naming upstream's types", async () => {
    const host = await controlHost();
    const run = await provision(agentWithJob(deviceConfig(host.port), { provision_data: { control_host_iso_url: 'http://oem.example/x.iso', control_host_iso_type: 'uefi' } }), 'oem_autoinstall');
    expect(run.code).toBe(1);
    expect(run.out).toContain('Unsupported ISO type: "uefi". Supported types: bootstrap, stock, bios, dummyefi');
    expect(host.calls).toEqual([]);
  });
});

describe("upstream's former names", () => {
  it.each([['zapper_kvm', 'control_host_kvm'], ['zapper_iot', 'control_host_iot']])('%s is refused (exit 2), naming %s', async (former, now) => {
    const run = await runPhase(agentWithJob(deviceConfig(8000), KVM_JOB), former, 'provision', { HOME: home });
    expect(run.code).toBe(2);
    expect(run.out).toContain(`device type ${former} is upstream's former name of ${now}; use ${now}`);
  });
});

