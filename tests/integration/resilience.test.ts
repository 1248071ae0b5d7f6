/**
 * The failures real Testflinger labs hit, reproduced against the dev server over HTTP and, where
 * processes matter, with the real agent program, real signals and a real kill -9.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar';
import { stringify } from 'yaml';
import { DevServer } from '../../src/devserver';
import { ECHO_COMMANDS, expectIdleOnServer, jobState, morePolls, startAgent, type RunningAgent } from '../helpers/agent';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

let server: DevServer;
let running: RunningAgent[] = [];
const processes: ChildProcess[] = [];
beforeEach(async () => {
  server = new DevServer();
  await server.start();
});
afterEach(async () => {
  for (const p of processes.splice(0)) p.kill('SIGKILL');
  await Promise.all(running.splice(0).map((r) => r.stop()));
  await server.stop();
});
function agent(conf: Record<string, unknown> = {}): RunningAgent {
  const r = startAgent(server, conf);
  running.push(r);
  return r;
}

/** The real agent program, as supervisord would run it. */
function agentProcess(confFile: string, env: Record<string, string> = {}): ChildProcess & { output: () => string } {
  let output = '';
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'testflinger-agent.js'), '-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  processes.push(child);
  return Object.assign(child, { output: () => output });
}

function writeConf(dir: string, extra: Record<string, unknown> = {}, name = 'testflinger-agent.conf'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(
    file,
    stringify({
      agent_id: 'proc-agent',
      server_address: server.url,
      job_queues: ['q1'],
      polling_interval: 0.1,
      execution_basedir: path.join(dir, 'run'),
      logging_basedir: path.join(dir, 'logs'),
      results_basedir: path.join(dir, 'results'),
      ...ECHO_COMMANDS,
      ...extra,
    }),
  );
  return file;
}

const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));

it('1. a job that moves everything in its run directory does not break the agent; artifacts still arrive', async () => {
  agent({ test_command: 'mkdir artifacts; mv * artifacts 2>/dev/null; ls artifacts' });
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => server.artifacts.get(id), 'artifacts');
  expect(server.resultView(id)).toMatchObject({ job_state: 'complete', setup_status: 0, test_status: 0, cleanup_status: 0 });
  const out = tempDir('art');
  fs.writeFileSync(path.join(out, 'a.tgz'), server.artifacts.get(id)!);
  await tar.x({ file: path.join(out, 'a.tgz'), cwd: out });
  expect(fs.readdirSync(path.join(out, 'artifacts')).sort()).toEqual(expect.arrayContaining(['setup.log', 'testflinger.json', 'testflinger-outcome.json']));
  const next = server.submitJob({ job_queue: 'q1' });
  await eventually(() => jobState(server, next) === 'complete', 'the next job');
  await expectIdleOnServer(server, 'agent-1');
});

it('2. a safe restart posts state restart, not offline; the new process comes back waiting, but keeps an operator offline', async () => {
  const dir = tempDir('proc');
  const conf = writeConf(dir);
  const first = agentProcess(conf);
  await eventually(() => server.agents.get('proc-agent')?.['state'] === 'waiting', 'first process waiting');
  first.kill('SIGUSR1');
  expect(await exited(first)).toBe(0);
  expect(server.agents.get('proc-agent')?.['state']).toBe('restart');
  const second = agentProcess(conf);
  await eventually(() => server.agents.get('proc-agent')?.['state'] === 'waiting', 'second process waiting');
  await expectIdleOnServer(server, 'proc-agent');
  second.kill('SIGUSR1');
  await exited(second);
  server.setAgentState('proc-agent', 'offline', 'Set to offline by admin. Reason: bad cable');
  const third = agentProcess(conf);
  await eventually(() => /serving queues/.test(third.output()), 'third process up');
  await morePolls(server, 'proc-agent', 3);
  expect(server.agents.get('proc-agent')).toMatchObject({ state: 'offline', comment: 'Set to offline by admin. Reason: bad cable' });
  await expectIdleOnServer(server, 'proc-agent', 'offline');
});

it('3. one process per agent: a second start refuses; an orphan of a dead supervisor is replaced', async () => {
  const dir = tempDir('proc');
  const conf = writeConf(dir);
  const first = agentProcess(conf);
  await eventually(() => server.agents.get('proc-agent')?.['state'] === 'waiting', 'first process up');
  const second = agentProcess(conf);
  expect(await exited(second)).toBe(3);
  expect(second.output()).toMatch(new RegExp(`agent_id "proc-agent" is already run by another testflinger-agent \\(pid ${first.pid}: `));
  expect(second.output()).toContain(conf);
  first.kill('SIGTERM');
  await exited(first);
  // An orphan: started by a shell that exits, so it is re-parented to init, like the agents of
  // a supervisord that was OOM-killed.
  const shell = spawn('sh', ['-c', `"${process.execPath}" "${path.join(repoRoot, 'dist', 'testflinger-agent.js')}" -c "${conf}" >/dev/null 2>&1 & echo $!`], { stdio: ['ignore', 'pipe', 'ignore'] });
  let orphanPid = '';
  shell.stdout?.on('data', (d: Buffer) => (orphanPid += d.toString()));
  await exited(shell);
  const pid = Number(orphanPid.trim());
  await eventually(() => fs.existsSync(path.join(dir, 'logs', 'proc-agent.pid')) && fs.readFileSync(path.join(dir, 'logs', 'proc-agent.pid'), 'utf8').trim() === String(pid), 'orphan holds the lock');
  const replacement = agentProcess(conf);
  await eventually(() => /stopping orphaned agent process/.test(replacement.output()), 'replacement stops the orphan');
  await eventually(() => !fs.existsSync(`/proc/${pid}`) || /State:\s+Z/.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')), 'orphan gone');
  await eventually(() => fs.readFileSync(path.join(dir, 'logs', 'proc-agent.pid'), 'utf8').trim() === String(replacement.pid), 'the replacement holds the lock');
  await eventually(() => /serving queues/.test(replacement.output()), 'the replacement serving');
});

it('3b. a second conf with the same agent_id is refused by the lock and leaves the running job alone', async () => {
  const dir = tempDir('proc');
  const phases = { test_command: 'echo test-started; sleep 60', cleanup_command: 'echo cleanup-ran' };
  const first = agentProcess(writeConf(dir, phases, 'first.conf'));
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => /test-started/.test(String(server.resultView(id)?.['test_output'])), 'test phase running');
  const progress = JSON.parse(fs.readFileSync(path.join(dir, 'run', `.${id}.agent`, 'progress.json'), 'utf8')) as { phasePid: number };
  const second = agentProcess(writeConf(dir, phases, 'second.conf'));
  expect(await exited(second)).toBe(3);
  expect(second.output()).toMatch(new RegExp(`agent_id "proc-agent" is already run by another testflinger-agent \\(pid ${first.pid}: `));
  // Nothing of the first process's job was touched: same phase, its process alive, no cleanup.
  expect(first.exitCode).toBeNull();
  expect(jobState(server, id)).toBe('test');
  expect(fs.existsSync(`/proc/${progress.phasePid}`)).toBe(true);
  expect(server.resultView(id)?.['cleanup_output']).toBeUndefined();
  first.kill('SIGTERM');
  await exited(first);
  await eventually(() => jobState(server, id) === 'complete', 'job reported by its own process');
  expect(String(server.resultView(id)?.['cleanup_output']).match(/cleanup-ran/g)).toHaveLength(1);
  expect(server.resultView(id)?.['test_status']).toBe(137);
});

it('3c. the lock is per scope: other installations may use the same agent_id, one scope may not', async () => {
  const a = agentProcess(writeConf(tempDir('proc')));
  const b = agentProcess(writeConf(tempDir('proc')));
  await eventually(() => /serving queues/.test(a.output()) && /serving queues/.test(b.output()), 'both installations serving');
  const scope = { TESTFLINGER_AGENT_LOCK_SCOPE: tempDir('scope') };
  const c = agentProcess(writeConf(tempDir('proc')), scope);
  await eventually(() => /serving queues/.test(c.output()), 'the scoped agent serving');
  const d = agentProcess(writeConf(tempDir('proc')), scope);
  expect(await exited(d)).toBe(3);
  expect(d.output()).toMatch(new RegExp(`agent_id "proc-agent" is already run by another testflinger-agent \\(pid ${c.pid}: `));
});

it('4. a server that rejects the outcome for good still gets the final job_state, so no one waits forever', async () => {
  const a = agent();
  const isOutcome = (b: Record<string, unknown>) => b['job_state'] === 'complete' && b['status'] !== undefined;
  server.failNext('POST', /^\/v1\/result\/[^/]+$/, 422, 1, isOutcome);
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => jobState(server, id) === 'complete', 'final job_state');
  expect(server.requests.filter((r) => r.method === 'POST' && r.status === 422)).toHaveLength(1);
  await eventually(() => !fs.existsSync(path.join(a.config.results_basedir, id)), 'nothing left queued');
  await expectIdleOnServer(server, 'agent-1');
});

it('4b. a retryable failure of the outcome keeps it on disk until the server takes it', async () => {
  const a = agent();
  server.failNext('POST', /^\/v1\/result\/[^/]+$/, 503, 3, (b) => b['job_state'] === 'complete');
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => fs.existsSync(path.join(a.config.results_basedir, id)), 'outcome kept on disk');
  await eventually(() => jobState(server, id) === 'complete', 'outcome delivered after retries', 20000);
  expect(server.requests.filter((r) => r.status === 503)).toHaveLength(3);
  // The agent drops its copy once the server's answer reaches it, a moment after the server has it.
  await eventually(() => !fs.existsSync(path.join(a.config.results_basedir, id)), 'the kept outcome removed once delivered');
  await expectIdleOnServer(server, 'agent-1');
});

it('5. agent state and provision-log posts that fail are retried until they land', async () => {
  agent();
  await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting', 'agent up');
  server.failNext('POST', /^\/v1\/agents\/provision_logs\//, 503, 4);
  server.failNext('POST', /^\/v1\/agents\/data\//, 503, 6);
  const id = server.submitJob({ job_queue: 'q1', provision_data: {}, test_data: {} });
  await eventually(() => jobState(server, id) === 'complete', 'job complete', 20000);
  await eventually(() => server.provisionLogs.get('agent-1')?.length === 1, 'provision log landed', 20000);
  await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting' && server.agents.get('agent-1')?.['job_id'] === '', 'final state landed', 20000);
  await expectIdleOnServer(server, 'agent-1');
});

it('6. kill -9 mid-job: the next process reports the job failed with the reason, runs cleanup, then takes new jobs', async () => {
  const dir = tempDir('proc');
  const conf = writeConf(dir, { test_command: 'echo test-started; sleep 60', cleanup_command: 'echo cleanup-after-crash' });
  const first = agentProcess(conf);
  const id = server.submitJob({ job_queue: 'q1', test_data: {} });
  await eventually(() => /test-started/.test(String(server.resultView(id)?.['test_output'])), 'test phase running');
  const progress = JSON.parse(fs.readFileSync(path.join(dir, 'run', `.${id}.agent`, 'progress.json'), 'utf8')) as { phasePid: number };
  first.kill('SIGKILL');
  await exited(first);
  agentProcess(conf);
  await eventually(() => jobState(server, id) === 'complete', 'interrupted job reported', 20000);
  const result = server.resultView(id) as Record<string, unknown>;
  expect(result['test_status']).toBe(137);
  expect(String(result['test_output'])).toMatch(/test-started[\s\S]*the agent stopped unexpectedly during test/);
  expect(String(result['cleanup_output'])).toMatch(/cleanup-after-crash/);
  await eventually(() => !fs.existsSync(`/proc/${progress.phasePid}`) || /State:\s+Z/.test(fs.readFileSync(`/proc/${progress.phasePid}/status`, 'utf8')), "the killed agent's phase is ended too");
  // Idle after the recovery, before any new job could have posted `waiting` for it.
  await expectIdleOnServer(server, 'proc-agent');
  const next = server.submitJob({ job_queue: 'q1' });
  await eventually(() => jobState(server, next) === 'complete', 'the next job', 20000);
  await expectIdleOnServer(server, 'proc-agent');
});
