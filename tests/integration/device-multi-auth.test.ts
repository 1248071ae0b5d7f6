/**
 * multi on a server whose device queues are restricted: only an authorised client may submit a
 * job to them or cancel one. The multi agent has a token file; it feeds its access token to its
 * provision and cleanup phases on a pipe (fd 5), and to no other phase. The children agents
 * need no token (taking and running jobs is open). End to end with the real agent programs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DevServer } from '../../src/devserver';
import { AgentLab, type LabAgent } from '../helpers/agent-lab';
import { agentWithJob, runPhase } from '../helpers/phase-script';
import { eventually, tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

const RESTRICTED = ['dut-a-q', 'dut-b-q'];
let lab: AgentLab;
let server: DevServer;
let tokenFile: string;

beforeAll(async () => {
  lab = await new AgentLab({ auth: { clientId: 'lab-agents', secret: 'client-secret', restrictedQueues: RESTRICTED } }).start();
  server = lab.server;
  const res = await fetch(`${server.url}/v1/oauth2/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('lab-agents:client-secret').toString('base64')}` } });
  const { refresh_token: refresh } = (await res.json()) as { refresh_token: string };
  tokenFile = path.join(tempDir('token'), 'refresh_token');
  fs.writeFileSync(tokenFile, JSON.stringify({ refresh_token: refresh }), { mode: 0o600 });
});
function agent(name: string, type: string, queue: string, device: Record<string, unknown>): LabAgent {
  return { provisionType: type, agentId: name, queue, phases: ['setup', 'provision', 'test', 'allocate', 'cleanup'], device: { agent_name: name, ...device }, env: { PATH: process.env['PATH'], HOME: tempDir('agent-home') } };
}

const state = (id: string) => server.resultView(id)?.['job_state'];
/** What the test phase tries: the descriptor the token came on in provision, and the variable naming it. */
const PROBE = [
  'echo "fd5: $(cat <&5 2>&1)"',
  'echo "token fd: ${TESTFLINGER_SERVER_TOKEN_FD:-unset}"',
  'echo "devices: $DEVICE_IP_1 and $DEVICE_IP_2"',
].join('; ');

it("creates the children on restricted queues with the agent's access token; the test phase of the same job has no way to it", async () => {
  lab.startAgent({ ...agent('multi-auth', 'multi', 'multi-auth-q', { testflinger_server: server.url, multi_poll_seconds: 0.3 }), args: ['--token-file', tokenFile] });
  for (const [name, queue, ip] of [['dut-auth-a', 'dut-a-q', '10.0.1.11'], ['dut-auth-b', 'dut-b-q', '10.0.1.12']] as const) lab.startAgent(agent(name, 'fake', queue, { device_ip: ip }));
  const parent = server.submitJob({
    job_queue: 'multi-auth-q',
    provision_data: { jobs: [{ job_queue: 'dut-a-q' }, { job_queue: 'dut-b-q' }] },
    test_data: { test_cmds: PROBE },
  });
  await eventually(() => state(parent) === 'complete', 'the parent job to complete', 60_000);
  const result = server.resultView(parent) ?? {};
  expect(result).toMatchObject({ provision_status: 0, test_status: 0, cleanup_status: 0 });
  const children = [...String(result['provision_output']).matchAll(/Created job (\S+)/g)].map((m) => m[1] as string);
  expect(children.map((id) => server.jobs.get(id)?.queue).sort()).toEqual(RESTRICTED);
  expect(server.requests.filter((r) => r.method === 'POST' && r.path === '/v1/job').map((r) => r.status)).toEqual([200, 200]);
  // Cleanup cancels them, as the agent too: the children still held their devices then.
  expect(server.requests.filter((r) => /^\/v1\/job\/[^/]+\/action$/.test(r.path)).map((r) => r.status)).toEqual([200, 200]);
  for (const child of children) expect(state(child)).toBe('cancelled');

  const testOutput = String(result['test_output']);
  expect(testOutput).toContain('devices: 10.0.1.11 and 10.0.1.12');
  expect(testOutput).toContain('5: Bad file descriptor');
  expect(testOutput).toContain('token fd: unset');
  const tokens = server.issuedAccessTokens();
  expect(tokens.length).toBeGreaterThan(0);
  for (const token of tokens) {
    expect(testOutput).not.toContain(token);
    expect(String(result['provision_output'])).not.toContain(token);
  }
});

it('the same provision without the token (no agent gave one) is refused by the server, and says so', async () => {
  const parent = server.submitJob({ job_queue: 'nobody-q' });
  const dirs = agentWithJob({ agent_name: 'multi-bare', testflinger_server: server.url, multi_poll_seconds: 0.2 }, { job_id: parent, provision_data: { jobs: [{ job_queue: 'dut-a-q' }] } });
  const run = await runPhase(dirs, 'multi', 'provision', { PATH: process.env['PATH'] ?? '' });
  expect(run.code).toBe(1);
  expect(run.out).toContain('Unable to create job: POST /v1/job answered HTTP 401');
  expect(run.out).toContain('sent without credentials');
});
