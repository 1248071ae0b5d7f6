/**
 * An agent given an https:// server talks TLS to it: node:https is loaded on the first https URL
 * (not at start, so that agents on plain http never pay for TLS), and a real agent process polls
 * through a TLS front of the dev server it trusts through NODE_EXTRA_CA_CERTS.
 */
import { tlsFront, type TlsFront } from '../../bench/tls';
import { DevServer } from '../../src/devserver';
import { AgentProcess } from '../helpers/agentprocess';
import { tempDir } from '../helpers/tmp';

let server: DevServer;
let front: TlsFront;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  server = new DevServer();
  front = await tlsFront(await server.start(), tempDir('tls'));
});
afterEach(async () => agent?.stop());
afterAll(async () => {
  await front.stop();
  await server.stop();
});

it('polls an https server and runs its job', async () => {
  agent = new AgentProcess({ NODE_EXTRA_CA_CERTS: front.caFile }, tempDir('https-agent'), true).start(front.url, { test_command: 'echo over tls' });
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  const deadline = Date.now() + 30_000;
  while (server.resultView(id)?.['job_state'] !== 'complete' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(server.resultView(id)?.['job_state']).toBe('complete');
  expect(server.resultView(id)?.['test_output']).toContain('over tls');
});
