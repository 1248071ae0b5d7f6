/**
 * A job of each control-host type end to end: the real agent program (dist/testflinger-agent.js)
 * takes the job from the dev server and runs the charm's rendered tf-* scripts, which run the
 * connector against the emulated control host.
 */
import * as path from 'node:path';
import { AgentLab } from '../helpers/agent-lab';
import { EmulatedControlHost } from '../helpers/controlhost';
import { sshKeygen } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let lab: AgentLab;
const hosts: EmulatedControlHost[] = [];

beforeAll(async () => {
  lab = await new AgentLab().start();
});
afterAll(async () => {
  for (const host of hosts) await host.stop();
});

/** Starts an agent of `type` on its own queue, its device behind a fresh emulated control host. */
async function agentFor(type: string): Promise<{ host: EmulatedControlHost; queue: string }> {
  const host = await new EmulatedControlHost({ logs: [{ level: 'INFO', message: `${type}: flashing` }, { level: 'INFO', message: `${type}: done` }] }).start();
  hosts.push(host);
  const home = tempDir('agent-home');
  sshKeygen(path.join(home, '.ssh', 'id_rsa'));
  const queue = lab.startAgent({
    provisionType: type,
    device: { device_ip: '127.0.0.1', agent_name: `${type}-agent`, control_host: '127.0.0.1', control_host_rest_port: host.port, reboot_script: ['pdu-cycle 4'] },
    env: { PATH: process.env['PATH'], HOME: home },
  });
  return { host, queue };
}

async function runJob(queue: string, provisionData: Record<string, unknown>): Promise<Record<string, unknown>> {
  return lab.result(lab.submit(queue, { job: { provision_data: provisionData, test_data: { test_cmds: 'echo "testing $DEVICE_IP"' } } }), 60_000);
}

it.each([
  ['control_host_kvm', 'ProvisioningKVM', { url: 'http://cdimage.example/noble.iso', robot_tasks: ['login.robot'] }],
  ['control_host_iot', 'ProvisioningIoT', { preset: 'core24', urls: ['https://images.example/core24.img.xz'], agent_ssh_access: false }],
  ['oem_autoinstall', 'ProvisioningOEM', { control_host_iso_url: 'http://oem.example/noble-oem.iso', control_host_iso_type: 'dummyefi' }],
])('the agent provisions a %s device through tf-provision (the control host runs %s), then runs test_cmds', async (type, method, provisionData) => {
  const { host, queue } = await agentFor(type);
  const result = await runJob(queue, provisionData);
  expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, test_status: 0, cleanup_status: 0 });
  expect(String(result['provision_output'])).toMatch(new RegExp(`\\[control-host\\] ${type}: flashing\\n\\[control-host\\] ${type}: done`));
  expect(String(result['test_output'])).toContain('testing 127.0.0.1');
  expect(host.provisions.map((p) => [p.method, p.kwargs['agent_name']])).toEqual([[method, `${type}-agent`]]);
  // The control host is asked to prepare for each phase it serves, as upstream asks it.
  expect(host.calls.filter((c) => c.includes('/system/setup/'))).toEqual(['POST /api/v1/system/setup/provisioning', 'POST /api/v1/system/setup/test']);
});
