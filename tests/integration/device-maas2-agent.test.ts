/**
 * A maas2 job end to end: the real agent program (dist/testflinger-agent.js) takes the job from
 * the dev server and runs the charm's rendered tf-* scripts, which run the connector against the
 * emulated MAAS; the "deployed" image is a real sshd that starts when the deploy finishes, with
 * fwupd played by stand-ins; the serial console is a TCP console server on 127.0.0.1.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentLab } from '../helpers/agent-lab';
import { FirmwareMachine } from '../helpers/fwupd-machine';
import { EmulatedMaas } from '../helpers/maas';
import { serialConsole } from '../helpers/serial-console';
import { freePort, sshKeygen, TestSshd } from '../helpers/sshd';
import { eventually, tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let lab: AgentLab;
let image: TestSshd | undefined;
let machine: FirmwareMachine | undefined;

beforeAll(async () => {
  lab = await new AgentLab().start();
});
afterAll(async () => {
  machine?.stop();
  await image?.stopAndWait();
});

it('the agent provisions a maas2 device through tf-provision (its serial console logged), updates its firmware through tf-firmware-update, runs test_cmds on it, and releases it in cleanup', async () => {
  const home = tempDir('agent-home');
  const key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
  const maas = new EmulatedMaas();
  const port = await freePort();
  machine = new FirmwareMachine({ vendor: 'Dell Inc.', type: 3 });
  const consoleServer = await serialConsole('[    0.000000] Linux version 6.8.0-31-generic\r\ndut-maas-1 login:\r\n');
  const queue = lab.startAgent({
    provisionType: 'maas2',
    agentId: 'maas-agent-1',
    phases: ['setup', 'provision', 'firmware_update', 'test', 'cleanup'],
    device: { device_ip: '127.0.0.1', ssh_port: port, test_username: os.userInfo().username, agent_name: 'maas-agent-1', maas_user: maas.profile, node_id: maas.nodeId, timeout_min: 0.5, maas_poll_seconds: 0.3, maas_release_wait_seconds: 5, firmware_reboot_timeout_seconds: 20, firmware_poll_seconds: 0.3, serial_host: '127.0.0.1', serial_port: consoleServer.port },
    env: { ...maas.env(), HOME: home },
  });

  const ssh = `ssh -p ${port} -i ${key.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
  const id = lab.submit(queue, { job: { provision_data: { distro: 'noble' }, firmware_update_data: { version: 'latest' }, test_data: { test_cmds: `${ssh} $(id -un)@$DEVICE_IP 'echo "hello from the deployed image"'` } } });

  await eventually(() => fs.existsSync(maas.deployedSignal), 'the deploy to finish', 60_000);
  image = await new TestSshd().start([key.publicKey], { port, sessionPath: machine.bin });
  machine.watch(image);
  const result = await lab.result(id, 60_000);

  expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, firmware_update_status: 0, test_status: 0, cleanup_status: 0 });
  expect(String(result['provision_serial'])).toContain('dut-maas-1 login:');
  expect(String(result['firmware_update_output'])).toContain('firmware: "System Firmware": firmware "1.14.0" -> "1.15.1"');
  expect(machine.events).toEqual(['reboot']);
  expect(String(result['provision_output'])).toMatch(/Running testflinger-device-connector maas2 provision for maas-agent-1[\s\S]*deployed and booted/);
  expect(String(result['test_output'])).toMatch(/hello from the deployed image/);
  expect(maas.machine()).toMatchObject({ status_name: 'Ready', deployed: { distro_series: 'noble' } });
});
