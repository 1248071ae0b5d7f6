/**
 * The test phase logs the device's serial console to test-serial.log while the test commands
 * run, as upstream's runtest does for every type: the shared phase (noprovision, the boards) and
 * the control-host types and multi, which wrap it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { agentWithJob, runPhase } from '../helpers/phase-script';
import { serialConsole } from '../helpers/serial-console';

jest.setTimeout(60_000);

let port: number;
beforeAll(async () => {
  port = (await serialConsole('ttyS0: login: \r\n')).port;
});

// The commands wait until the console's greeting is in the log: the logging runs meanwhile.
const JOB = { test_data: { test_cmds: 'for i in $(seq 50); do grep -q login test-serial.log 2>/dev/null && break; sleep 0.2; done; echo tested' } };

it.each([
  ['control_host_kvm', { device_ip: '127.0.0.1', agent_name: 'dut-1', control_host: '127.0.0.1', control_host_rest_port: 1, reboot_script: [] }],
  ['multi', { agent_name: 'multi-1', testflinger_server: 'http://127.0.0.1:1' }],
  ['noprovision', { device_ip: '127.0.0.1', agent_name: 'np-1' }],
])('%s logs the serial console during the test phase', async (type, device) => {
  const dirs = agentWithJob({ ...device, serial_host: '127.0.0.1', serial_port: port }, JOB);
  const run = await runPhase(dirs, type, 'test', { PATH: process.env['PATH'] ?? '' });
  expect(run).toMatchObject({ code: 0 });
  expect(run.out).toContain('Successfully connected to serial logging server');
  expect(run.out).toContain('tested');
  expect(fs.readFileSync(path.join(dirs.runDir, 'test-serial.log'), 'utf8')).toBe('ttyS0: login: \r\n');
});

it('a serial_port that is not a port fails the test phase naming the key', async () => {
  const dirs = agentWithJob({ device_ip: '127.0.0.1', agent_name: 'np-1', serial_host: '127.0.0.1', serial_port: 'x' }, JOB);
  const run = await runPhase(dirs, 'noprovision', 'test', { PATH: process.env['PATH'] ?? '' });
  expect(run.code).not.toBe(0);
  expect(run.out).toContain('serial_port');
});
