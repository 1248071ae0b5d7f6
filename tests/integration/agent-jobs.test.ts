/** The agent runtime against the dev server over real HTTP on 127.0.0.1. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar';
import { TestflingerClient } from '../../src/agent/client';
import { systemClock } from '../../src/agent/clock';
import { DevServer } from '../../src/devserver';
import { devServerPerTest, expectIdleOnServer, jobState, morePolls } from '../helpers/agent';
import { eventually, tempDir } from '../helpers/tmp';

let server: DevServer;
const agent = devServerPerTest((s) => (server = s));
const done = (id: string) => eventually(() => ['complete', 'cancelled'].includes(String(jobState(server, id))), `job ${id} to end`);

describe('a job, start to finish', () => {
  it('runs every phase in order, streams output, and reports the outcome', async () => {
    const a = agent();
    const id = server.submitJob({ job_queue: 'q1', provision_data: { distro: 'noble' }, firmware_update_data: {}, test_data: { test_cmds: 'x' }, allocate_data: { allocate: false, skip: true }, reserve_data: { skip: true } });
    await done(id);
    const result = server.resultView(id) as Record<string, unknown>;
    expect(result).toMatchObject({ job_state: 'complete', setup_status: 0, provision_status: 0, firmware_update_status: 0, test_status: 0, cleanup_status: 0 });
    expect(result['allocate_status']).toBeUndefined();
    expect(result['test_output']).toMatch(/test phase/);
    expect(result['cleanup_output']).toMatch(/cleanup phase/);
    expect(server.provisionLogs.get('agent-1')).toEqual([{ job_id: id, exit_code: 0, detail: 'provision_success' }]);
    await expectIdleOnServer(server, 'agent-1');
    expect(fs.existsSync(path.join(a.config.execution_basedir, id))).toBe(false);
    const fragments = server.fragments(id);
    expect(fragments.map((f) => f.fragment_number)).toEqual(fragments.map((_, i) => i));
  });

  it('gives phase commands the config values and the run directory', async () => {
    agent({ test_command: 'echo "id=$agent_id type=$provision_type"; cat testflinger.json | head -c 1; echo; ls', provision_type: 'noprovision' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
    const out = String(server.resultView(id)?.['test_output']);
    expect(out).toMatch(/id=agent-1 type=noprovision/);
    expect(out).toMatch(/^\{$/m);
    expect(out).toMatch(/testflinger-outcome\.json/);
  });

  it('skips phases with no command, no data, or skip: true', async () => {
    agent({ firmware_update_command: '' });
    const id = server.submitJob({ job_queue: 'q1', provision_data: { skip: true }, firmware_update_data: {}, test_data: {} });
    await done(id);
    const result = server.resultView(id) as Record<string, unknown>;
    expect(Object.keys(result).filter((k) => k.endsWith('_status')).sort()).toEqual(['cleanup_status', 'setup_status', 'test_status']);
  });

  it('stops at a failing phase, except test, and always runs cleanup', async () => {
    agent({ provision_command: 'echo broken; exit 3' });
    const failed = server.submitJob({ job_queue: 'q1', provision_data: {}, test_data: {} });
    await done(failed);
    expect(server.resultView(failed)).toMatchObject({ provision_status: 3, cleanup_status: 0 });
    expect(server.resultView(failed)?.['test_status']).toBeUndefined();
    expect(server.provisionLogs.get('agent-1')?.[0]).toMatchObject({ exit_code: 3, detail: 'provision_fail' });
  });

  it('goes on after a failing test phase', async () => {
    agent({ test_command: 'exit 1' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {}, reserve_data: { timeout: 1 } });
    await done(id);
    expect(server.resultView(id)).toMatchObject({ test_status: 1, reserve_status: 0, cleanup_status: 0, job_state: 'complete' });
  });
});

describe('stopping a job', () => {
  it('cancel during test stops the phase, runs cleanup, and keeps the job cancelled', async () => {
    agent({ test_command: 'echo started; sleep 30; echo never' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => /started/.test(String(server.resultView(id)?.['test_output'])), 'test to start');
    server.cancelJob(id);
    await eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, 'cleanup after cancel', 25000);
    // Stopped by the cancel (not by the end of its sleep), then cleanup.
    const result = server.resultView(id) as Record<string, unknown>;
    expect(result).toMatchObject({ job_state: 'cancelled', test_status: 137, cleanup_status: 0 });
    expect(result['test_output']).toMatch(/started\n[\s\S]*Job cancelled, stopping test/);
    expect(result['test_output']).not.toMatch(/never/);
    await expectIdleOnServer(server, 'agent-1');
  });

  it('global timeout: the job may ask for less than the device allows', async () => {
    agent({ test_command: 'sleep 30', global_timeout: 3600 });
    const id = server.submitJob({ job_queue: 'q1', global_timeout: 1, test_data: {} });
    await done(id);
    expect(server.resultView(id)).toMatchObject({ test_status: 137, cleanup_status: 0 });
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/global timeout reached \(1s\)/);
  });

  it('global timeout: a phase running past it is killed with a message', async () => {
    agent({ test_command: 'sleep 30', global_timeout: 1 });
    const id = server.submitJob({ job_queue: 'q1', global_timeout: 100, test_data: {} });
    await done(id);
    expect(server.resultView(id)).toMatchObject({ test_status: 137, cleanup_status: 0 });
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/global timeout reached \(1s\)/);
  });

  it('output timeout: a silent test phase is killed', async () => {
    agent({ test_command: 'echo one; sleep 30', output_timeout: 1 });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
    expect(server.resultView(id)).toMatchObject({ test_status: 137 });
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/output timeout reached \(1s without output\)/);
  });

  it('exit 46 means recovery failed: the agent goes offline and takes no more jobs', async () => {
    const a = agent({ provision_command: 'exit 46' });
    const id = server.submitJob({ job_queue: 'q1', provision_data: {} });
    await done(id);
    await eventually(() => server.agents.get('agent-1')?.['state'] === 'offline', 'agent offline');
    expect(String(server.agents.get('agent-1')?.['comment'])).toMatch(/recovery failed/i);
    expect(a.metrics.recoveryFailures.get({ agent_id: 'agent-1' })).toBe(1);
    await expectIdleOnServer(server, 'agent-1', 'offline');
    const next = server.submitJob({ job_queue: 'q1' });
    await morePolls(server, 'agent-1', 3);
    expect(jobState(server, next)).toBe('waiting');
  });
});

describe('agent states', () => {
  it.each(['offline', 'maintenance'])('takes no job while the server says %s, and keeps the comment', async (state) => {
    server.setAgentState('agent-1', state, 'Set to offline by admin. Reason: cabling');
    agent();
    const id = server.submitJob({ job_queue: 'q1' });
    await morePolls(server, 'agent-1', 3);
    expect(jobState(server, id)).toBe('waiting');
    expect(server.agents.get('agent-1')).toMatchObject({ state, comment: 'Set to offline by admin. Reason: cabling' });
    await expectIdleOnServer(server, 'agent-1', state);
    server.setAgentState('agent-1', 'waiting');
    await done(id);
    await expectIdleOnServer(server, 'agent-1');
  });

  it('server state restart: the idle agent exits for a restart and says so', async () => {
    const a = agent();
    await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting', 'agent up');
    server.setAgentState('agent-1', 'restart');
    expect(await a.exit).toBe('restart');
    expect(server.agents.get('agent-1')?.['state']).toBe('restart');
  });

  it('a restart state left by the previous process becomes waiting on start', async () => {
    server.setAgentState('agent-1', 'restart', 'Restarting');
    agent();
    await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting', 'waiting after restart');
  });

  it('an offline marker file stops jobs (also the form without the dash before the number), and the server shows why', async () => {
    const markers = tempDir('markers');
    fs.writeFileSync(path.join(markers, 'TESTFLINGER-DEVICE-OFFLINE-agent1'), 'repair: serial cable\nsecond line ignored\n');
    agent({}, { markerDir: markers });
    const id = server.submitJob({ job_queue: 'q1' });
    await morePolls(server, 'agent-1', 3);
    expect(jobState(server, id)).toBe('waiting');
    expect(server.agents.get('agent-1')).toMatchObject({ state: 'offline', comment: 'offline marker: repair: serial cable' });
    fs.rmSync(path.join(markers, 'TESTFLINGER-DEVICE-OFFLINE-agent1'));
    await done(id);
    await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting', 'agent-1 waiting once the marker is gone');
    expect(server.agents.get('agent-1')?.['comment']).toBe('');
  });

  it("an operator's offline on the server is not lifted when no marker is there", async () => {
    agent();
    await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting', 'agent-1 reported in');
    server.agents.set('agent-1', { ...server.agents.get('agent-1'), state: 'offline', comment: 'lab move' });
    await morePolls(server, 'agent-1', 3);
    expect(server.agents.get('agent-1')).toMatchObject({ state: 'offline', comment: 'lab move' });
  });

  it('SIGUSR1 while busy: the job finishes first, then the agent exits for a restart', async () => {
    const a = agent({ test_command: 'sleep 1; echo finished' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => jobState(server, id) === 'test', 'test phase');
    a.agent.requestRestart();
    expect(await a.exit).toBe('restart');
    expect(server.resultView(id)).toMatchObject({ job_state: 'complete', test_status: 0 });
  });

  it('while offline, a restart request waits until the agent is online again', async () => {
    server.setAgentState('agent-1', 'maintenance');
    const a = agent();
    let exited = false;
    void a.exit.then(() => (exited = true));
    await morePolls(server, 'agent-1', 1);
    a.agent.requestRestart();
    await morePolls(server, 'agent-1', 3);
    expect(exited).toBe(false);
    server.setAgentState('agent-1', 'waiting');
    expect(await a.exit).toBe('restart');
  });
});

describe('what a job sends and receives', () => {
  it('unpacks attachments under provision/, firmware_update/ and test/ only, refusing escapes', async () => {
    const src = tempDir('att');
    const inner = path.join(src, 'inner');
    fs.mkdirSync(path.join(inner, 'test'), { recursive: true });
    fs.writeFileSync(path.join(inner, 'test', 'data.txt'), 'payload');
    fs.writeFileSync(path.join(inner, 'evil.txt'), 'x');
    fs.writeFileSync(path.join(src, 'escape.txt'), 'x');
    // preservePaths keeps the member name "../escape.txt" as a hostile archive would have it.
    await tar.c({ gzip: true, cwd: inner, file: path.join(src, 'a.tar.gz'), preservePaths: true }, ['test', 'evil.txt', '../escape.txt']);
    const workDir = tempDir('run');
    agent({ execution_basedir: workDir, test_command: 'cat attachments/test/data.txt' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    server.attachments.set(id, fs.readFileSync(path.join(src, 'a.tar.gz')));
    server.jobs.get(id)!.data['attachments_status'] = 'complete';
    await done(id);
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/payload/);
    const setup = String(server.resultView(id)?.['setup_output']);
    expect(setup).toMatch(/attachment refused: "evil\.txt": not under provision\//);
    expect(setup).toMatch(/attachment refused: "\.\.\/escape\.txt": escapes the attachments folder/);
    expect(fs.readdirSync(workDir).filter((f) => !f.startsWith('.'))).toEqual([]);
  });

  it('uploads artifacts/ as a tar.gz', async () => {
    agent({ test_command: 'mkdir -p artifacts && echo hello > artifacts/report.txt' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
    await eventually(() => server.artifacts.get(id), 'artifact');
    const out = tempDir('art');
    fs.writeFileSync(path.join(out, 'a.tgz'), server.artifacts.get(id)!);
    await tar.x({ file: path.join(out, 'a.tgz'), cwd: out });
    expect(fs.readFileSync(path.join(out, 'artifacts', 'report.txt'), 'utf8')).toBe('hello\n');
  });

  it('masks phase secrets in every log fragment, even split across writes', async () => {
    agent({ test_command: 'echo "token is $API_TOKEN"; printf "s3cr"; sleep 0.3; printf "et-value\\n"' });
    const id = server.submitJob({ job_queue: 'q1', test_data: { secrets: { API_TOKEN: 's3cret-value' } } });
    await done(id);
    const all = server.fragments(id).map((f) => f.log_data).join('');
    expect(all).not.toMatch(/s3cret-value/);
    expect(all).toMatch(/token is \*\*\*\*/);
    expect(all.match(/\*\*\*\*/g)).toHaveLength(2);
  });

  it('streams a line from the test phase to the server while the phase still runs', async () => {
    // The phase only ends once the test has seen its line: the line cannot come from its end.
    const a = agent({ test_command: 'echo early-line; for i in $(seq 1 600); do [ -e release ] && break; sleep 0.05; done; echo released' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    const seen = await eventually(() => server.fragments(id).find((f) => /early-line/.test(f.log_data)), 'live line');
    expect(seen.phase).toBe('test');
    expect(String(server.resultView(id)?.['test_output'])).not.toMatch(/released/);
    fs.writeFileSync(path.join(a.config.execution_basedir, id, 'release'), '');
    await done(id);
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/early-line\n[\s\S]*released/);
  });

  it('serves Prometheus metrics for its jobs and phases', async () => {
    const a = agent();
    const metricsServer = await a.metrics.serve(0, '127.0.0.1');
    const port = (metricsServer.address() as { port: number }).port;
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    metricsServer.close();
    expect(text).toMatch(/^jobs_total\{agent_id="agent-1"\} 1$/m);
    expect(text).toMatch(/phase_duration_seconds_bucket\{agent_id="agent-1",test_phase="test",identifier="",release="",le="60"\} 1/);
  });

  it('asks only for queues the server restricts it to', async () => {
    agent({ job_queues: ['q1', 'q2'] });
    await eventually(() => server.agents.get('agent-1')?.['state'] === 'waiting', 'agent up');
    server.agents.set('agent-1', { ...server.agents.get('agent-1'), restricted_to: { q2: ['alice'] } });
    // A round of the loop that read the agent's data before the restriction may still ask for q1:
    // the jobs go in once a round has begun that reads it.
    const pollsBefore = server.polls('agent-1');
    await eventually(() => server.polls('agent-1') > pollsBefore, 'a poll after the restriction');
    const q1 = server.submitJob({ job_queue: 'q1' });
    const q2 = server.submitJob({ job_queue: 'q2' });
    await done(q2);
    expect(jobState(server, q1)).toBe('waiting');
  });
});

describe('stopping the agent and signing in', () => {
  it('SIGTERM mid-job ends the phase\'s process group and still reports the job', async () => {
    const a = agent({ test_command: 'echo started; sleep 30 & sleep 30; echo never' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => /started/.test(String(server.resultView(id)?.['test_output'])), 'test running');
    expect(await a.stop()).toBe('stopped');
    const result = server.resultView(id) as Record<string, unknown>;
    expect(result).toMatchObject({ job_state: 'complete', test_status: 137 });
    expect(String(result['test_output'])).toMatch(/Agent is shutting down, stopping test/);
    expect(String(result['test_output'])).not.toMatch(/never/);
  });

  it('streams <phase>-serial.log to the serial log endpoint', async () => {
    agent({ test_command: 'echo "console: booted" > test-serial.log; sleep 0.5; echo "console: login" >> test-serial.log' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
    expect(server.resultView(id)?.['test_serial']).toBe('console: booted\nconsole: login\n');
  });

  it('signs in with the refresh token file and sends Bearer tokens, reused until they near their expiry', async () => {
    const secured = new DevServer({ auth: { clientId: 'lab', secret: 's3', accessTtlS: 600 } });
    await secured.start();
    try {
      const token = await fetch(`${secured.url}/v1/oauth2/token`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('lab:s3').toString('base64')}` } });
      const { refresh_token } = (await token.json()) as { refresh_token: string };
      const dir = tempDir('token');
      const tokenFile = path.join(dir, 'refresh_token');
      fs.writeFileSync(tokenFile, JSON.stringify({ refresh_token, obtained_at: new Date().toISOString() }));
      let now = Date.now();
      const clock = { now: () => now, sleep: systemClock.sleep };
      const client = new TestflingerClient(secured.url, clock, { tokenFile, tokenMarginMs: 30_000 });
      const refreshes = () => secured.requests.filter((r) => r.path === '/v1/oauth2/refresh').length;
      await client.request('POST', '/v1/agents/data/agent-1', { json: { state: 'waiting' } });
      expect(refreshes()).toBe(1);
      // 600 s token, 30 s margin: one second before the margin it is still used...
      now += 569_000;
      await client.request('GET', '/v1/agents/data/agent-1');
      expect(refreshes()).toBe(1);
      // ...and once inside the margin it is replaced.
      now += 2000;
      await client.request('GET', '/v1/agents/data/agent-1');
      expect(refreshes()).toBe(2);
      expect(secured.requests.filter((r) => r.status === 401)).toEqual([]);
      await expect(new TestflingerClient(secured.url, systemClock).request('GET', '/v1/agents/data/agent-1')).rejects.toThrow(/HTTP 401/);
    } finally {
      await secured.stop();
    }
  });
});

describe('staying listed', () => {
  it('re-posts its agent data and advertised queues once a day, so an idle agent stays listed', async () => {
    let now = Date.now();
    const clock = { now: () => now, sleep: systemClock.sleep };
    agent({ advertised_queues: { q1: 'the q1 devices' } }, { clock });
    const reports = () => server.requests.filter((r) => r.method === 'POST' && r.path === '/v1/agents/queues').length;
    await eventually(() => reports() === 1, 'first report');
    await morePolls(server, 'agent-1', 3);
    expect(reports()).toBe(1);
    now += 25 * 3600 * 1000;
    await eventually(() => reports() === 2, 'daily report');
    expect(server.advertisedQueues).toEqual({ q1: 'the q1 devices' });
  });
});

describe('a server that goes away', () => {
  it('keeps the results of a job finished while the server was down, and sends them later', async () => {
    const port = Number(new URL(server.url).port);
    const a = agent({ test_command: 'echo before; sleep 1; echo after-outage' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => /before/.test(String(server.resultView(id)?.['test_output'])), 'test output');
    await server.stop();
    await eventually(() => fs.existsSync(path.join(a.config.results_basedir, id, 'result.json')), 'results kept on disk');
    const restarted = new DevServer({ port });
    // The same in-memory data, served again on the same port.
    Object.assign(restarted, { jobs: server.jobs, results: server.results, logs: server.logs, agents: server.agents, pending: server.pending, artifacts: server.artifacts });
    await restarted.start();
    try {
      await eventually(() => restarted.resultView(id)?.['job_state'] === 'complete', 'results delivered', 20000);
      expect(String(restarted.resultView(id)?.['test_output'])).toMatch(/before[\s\S]*after-outage/);
      // Dropped once the server's answer reaches the agent, a moment after the server has it.
      await eventually(() => !fs.existsSync(path.join(a.config.results_basedir, id)), 'the kept results removed once delivered');
      await expectIdleOnServer(restarted, 'agent-1');
    } finally {
      await a.stop();
      await restarted.stop();
    }
  });

  it('refuses to hand out jobs to a client without the agent_name cookie', async () => {
    const res = await fetch(`${server.url}/v1/job?queue=q1`);
    expect(res.status).toBe(401);
  });
});
