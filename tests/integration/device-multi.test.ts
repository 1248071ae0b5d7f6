/**
 * multi: a parent job that runs across several devices. End to end, the real agent programs
 * (a multi agent and two fake-device agents) serve the dev server; the connector-level tests run
 * tf-provision and tf-cleanup of a multi agent against the dev server with no child agents, so
 * children that never allocate, a parent cancelled meanwhile and cleanup can be seen.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DevServer } from '../../src/devserver';
import { AgentLab } from '../helpers/agent-lab';
import { agentWithJob, runPhase } from '../helpers/phase-script';
import { eventually, tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let lab: AgentLab;
let server: DevServer;

beforeAll(async () => {
  lab = await new AgentLab().start();
  server = lab.server;
});

function startAgent(name: string, type: string, queue: string, device: Record<string, unknown>): void {
  lab.startAgent({ provisionType: type, agentId: name, queue, phases: ['setup', 'provision', 'test', 'allocate', 'cleanup'], device: { agent_name: name, ...device }, env: { PATH: process.env['PATH'], HOME: tempDir('agent-home') } });
}

const state = (id: string) => server.resultView(id)?.['job_state'];

it("the multi agent's job allocates two devices through child jobs, its test phase gets DEVICE_IP_1 and DEVICE_IP_2, and the children end with it", async () => {
  startAgent('multi-1', 'multi', 'multi-q', { testflinger_server: server.url, multi_poll_seconds: 0.3 });
  startAgent('dut-a', 'fake', 'dut-a-q', { device_ip: '10.0.0.11' });
  startAgent('dut-b', 'fake', 'dut-b-q', { device_ip: '10.0.0.12' });
  const parent = server.submitJob({
    job_queue: 'multi-q',
    provision_data: { jobs: [{ job_queue: 'dut-a-q', provision_data: { distro: 'noble' } }, { job_queue: 'dut-b-q', provision_data: { distro: 'jammy' } }] },
    test_data: { test_cmds: 'echo "devices: $DEVICE_IP_1 and $DEVICE_IP_2"' },
  });
  await eventually(() => state(parent) === 'complete', 'the parent job to complete', 60_000);
  const result = server.resultView(parent) ?? {};
  expect(result).toMatchObject({ provision_status: 0, test_status: 0, cleanup_status: 0 });
  expect(String(result['test_output'])).toContain('devices: 10.0.0.11 and 10.0.0.12');
  const children = [...String(result['provision_output']).matchAll(/Created job (\S+)/g)].map((m) => m[1] as string);
  expect(children).toHaveLength(2);
  for (const child of children) {
    await eventually(() => ['complete', 'cancelled'].includes(String(state(child))), `child ${child} to end`, 30_000);
    expect(server.resultView(child)).toMatchObject({ allocate_status: 0 });
  }
});

describe('multi provision against the server, without agents for the children', () => {
  const device = () => ({ agent_name: 'multi-2', testflinger_server: server.url, multi_poll_seconds: 0.2 });
  const env = { PATH: process.env['PATH'] ?? '' };

  it("a child no device takes within allocation_timeout fails the phase naming it, and every child is cancelled", async () => {
    const parent = server.submitJob({ job_queue: 'nobody-q' });
    const dirs = agentWithJob(device(), { job_id: parent, allocation_timeout: 1, provision_data: { jobs: [{ job_queue: 'no-agent-q' }, 'not a job', { job_queue: 'no-agent-q' }] } });
    const run = await runPhase(dirs, 'multi', 'provision', env);
    expect(run.code).toBe(1);
    const children = [...run.out.matchAll(/Created job (\S+)/g)].map((m) => m[1] as string);
    expect(children).toHaveLength(2);
    expect(run.out).toContain('Job is not a dict: "not a job"');
    expect(run.out).toContain(`Timed out waiting for devices to allocate: ${children.join(', ')} not allocated within 1s`);
    for (const child of children) expect(state(child)).toBe('cancelled');
    // Each child follows the parent and stops in its allocate phase, as upstream submits them.
    expect(server.jobs.get(children[0] as string)?.data).toMatchObject({ job_queue: 'no-agent-q', parent_job_id: parent, allocate_data: { allocate: true } });
  });

  it('a parent cancelled while its children wait ends provision and cancels them; cleanup cancels what is left', async () => {
    const parent = server.submitJob({ job_queue: 'nobody-q' });
    const dirs = agentWithJob(device(), { job_id: parent, provision_data: { jobs: [{ job_queue: 'no-agent-q' }] } });
    const running = runPhase(dirs, 'multi', 'provision', env);
    await eventually(() => fs.existsSync(path.join(dirs.runDir, 'multi-children.json')), 'a child to be created');
    server.cancelJob(parent);
    const run = await running;
    expect(run.code).toBe(1);
    expect(run.out).toContain('Job cancelled or completed');
    const [child] = JSON.parse(fs.readFileSync(path.join(dirs.runDir, 'multi-children.json'), 'utf8')) as string[];
    expect(state(child as string)).toBe('cancelled');

    // A provision killed before it could cancel leaves its children to cleanup.
    const orphan = server.submitJob({ job_queue: 'no-agent-q' });
    fs.writeFileSync(path.join(dirs.runDir, 'multi-children.json'), JSON.stringify([orphan]));
    expect(await runPhase(dirs, 'multi', 'cleanup', env)).toMatchObject({ code: 0 });
    expect(state(orphan)).toBe('cancelled');
  });

  it('a job without provision_data.jobs fails naming the key; a config without testflinger_server is a usage error', async () => {
    const noJobs = await runPhase(agentWithJob(device(), { provision_data: { jobs: [] } }), 'multi', 'provision', env);
    expect(noJobs.code).toBe(1);
    expect(noJobs.out).toContain("testflinger.json: provision_data.jobs: You must specify a list of 'jobs' in the 'provision_data' section of your job.");
    const noServer = await runPhase(agentWithJob({ agent_name: 'multi-2' }, { provision_data: { jobs: [{}] } }), 'multi', 'provision', env);
    expect(noServer.code).toBe(2);
    expect(noServer.out).toContain('default.yaml: testflinger_server: Required');
  });
});
