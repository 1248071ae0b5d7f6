/**
 * The control host's hooks are the connector's, not a family's: any device type whose
 * default.yaml names a control_host gets, as upstream's base connector gives every type, the
 * control host's power cycle and setup before provisioning, and its setup before the test
 * phase; control_host_iot, which manages the device's power, keeps it off meanwhile. Through the
 * phase scripts, against the emulated control host on 127.0.0.1; noprovision checks a real sshd,
 * fake provisions nothing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmulatedControlHost, type ControlHostBehaviour } from '../helpers/controlhost';
import { agentWithJob, runPhase, type AgentDir, type PhaseRun } from '../helpers/phase-script';
import { serialConsole } from '../helpers/serial-console';
import { sshKeygen, TestSshd } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

const POWER_CYCLE = ['POST /api/v1/system/poweroff', 'GET /health'];
const SETUP_PROVISIONING = 'POST /api/v1/system/setup/provisioning';
const SETUP_TEST = 'POST /api/v1/system/setup/test';

/** The agents' home: HOME of every phase, holding the key noprovision logs in with. */
const home = tempDir('agent-home');
const hosts: EmulatedControlHost[] = [];
const sshds: TestSshd[] = [];
afterAll(async () => {
  for (const host of hosts) await host.stop();
  for (const sshd of sshds) await sshd.stopAndWait();
});

/** A control host whose power comes back when control_host_reboot_script touches `lab`/power-on. */
async function lab(behaviour: Partial<ControlHostBehaviour> = {}): Promise<{ host: EmulatedControlHost; dir: string; power: Record<string, unknown> }> {
  const dir = tempDir('hooks-lab');
  const host = await new EmulatedControlHost({ powerOnFlag: path.join(dir, 'power-on'), ...behaviour }).start();
  hosts.push(host);
  const power = {
    control_host_rest_port: host.port,
    control_host_reboot_script: [`touch ${path.join(dir, 'power-on')}`],
    control_host_offline_wait_seconds: 0,
    // Only types that manage the DUT's power (control_host_iot, muxpi) run these around the cycle.
    poweroff_script: [`touch ${path.join(dir, 'dut-off')}`],
    poweron_script: [`touch ${path.join(dir, 'dut-on')}`],
  };
  return { host, dir, power };
}

/** The marks the DUT's poweroff/poweron scripts leave. */
const dutMarks = (dir: string) => fs.readdirSync(dir).filter((name) => name.startsWith('dut-'));

function phase(dirs: AgentDir, type: string, name: 'provision' | 'test', env: Record<string, string> = {}): Promise<PhaseRun> {
  return runPhase(dirs, type, name, { HOME: home, PATH: process.env['PATH'] ?? '', ...env });
}

const TEST_JOB = { test_data: { test_cmds: 'echo tested' } };

describe("the control host's hooks around any device type", () => {
  it('noprovision: power cycle (poweroff, reboot script, /health), setup for provisioning, then its SSH check; setup for the test before the test phase', async () => {
    const { host, dir, power } = await lab();
    const key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
    const sshd = await new TestSshd().start([key.publicKey]);
    sshds.push(sshd);
    const device = { device_ip: '127.0.0.1', ssh_port: sshd.port, control_host: '127.0.0.1', ...power };
    const dirs = agentWithJob(device, { test_data: { test_username: os.userInfo().username, test_cmds: 'echo tested' } });

    const provision = await phase(dirs, 'noprovision', 'provision');
    expect(provision).toMatchObject({ code: 0 });
    expect(host.calls).toEqual([...POWER_CYCLE, SETUP_PROVISIONING]);
    expect(host.boots).toBe(1);
    const cycled = provision.out.indexOf('Attempt to power cycle the control host.');
    expect(cycled).toBeGreaterThanOrEqual(0);
    expect(provision.out.indexOf('answers over SSH')).toBeGreaterThan(cycled);
    // noprovision does not manage the DUT's power: its scripts are left alone.
    expect(dutMarks(dir)).toEqual([]);

    const test = await phase(dirs, 'noprovision', 'test');
    expect(test).toMatchObject({ code: 0 });
    expect(test.out).toContain('tested');
    expect(host.calls).toEqual([...POWER_CYCLE, SETUP_PROVISIONING, SETUP_TEST]);
  });

  it('DISABLE_CONTROL_HOST_POWERCYCLE skips the power cycle, not the setup', async () => {
    const { host, power } = await lab();
    const dirs = agentWithJob({ device_ip: '127.0.0.1', control_host: '127.0.0.1', ...power }, TEST_JOB);
    const run = await phase(dirs, 'fake', 'provision', { DISABLE_CONTROL_HOST_POWERCYCLE: '1' });
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toContain('Skipping control host power cycle (DISABLE_CONTROL_HOST_POWERCYCLE is set).');
    expect(host.calls).toEqual([SETUP_PROVISIONING]);
    expect(host.boots).toBe(0);
  });

  it('a device without control_host: no request, and no word of it in the output', async () => {
    const { host, dir, power } = await lab();
    const dirs = agentWithJob({ device_ip: '127.0.0.1', ...power }, TEST_JOB);
    const provision = await phase(dirs, 'fake', 'provision');
    const test = await phase(dirs, 'fake', 'test');
    expect(provision).toMatchObject({ code: 0 });
    expect(test).toMatchObject({ code: 0 });
    expect(host.calls).toEqual([]);
    expect(`${provision.out}${test.out}`).not.toMatch(/control.host|power cycle/i);
    expect(host.boots).toBe(0);
    expect(dutMarks(dir)).toEqual([]);
  });

  it('control_host_iot keeps the device off during the power cycle, and logs the serial console from before it', async () => {
    // The provisioning itself fails on the control host: the phase is over once it is asked.
    const { host, dir, power } = await lab({ outcome: 'failed' });
    // The console tells, in the log, which calls the control host had heard when logging began.
    const consoleServer = await serialConsole(() => `calls before the log: ${JSON.stringify(host.calls)}\r\n`);
    try {
      const device = { device_ip: '127.0.0.1', agent_name: 'iot-1', control_host: '127.0.0.1', reboot_script: [], serial_host: '127.0.0.1', serial_port: consoleServer.port, ...power };
      const dirs = agentWithJob(device, { provision_data: { urls: ['https://images.example/core24.img.xz'] } });
      const run = await phase(dirs, 'control_host_iot', 'provision');
      expect(run.code).toBe(1);
      expect(host.calls.slice(0, 4)).toEqual([...POWER_CYCLE, SETUP_PROVISIONING, 'POST /api/v1/provision']);
      expect(dutMarks(dir)).toEqual(['dut-off', 'dut-on']);
      expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toBe('calls before the log: []\r\n');
    } finally {
      await consoleServer.close();
    }
  });
});
