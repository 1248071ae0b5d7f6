/**
 * The agent against hostile input: jobs and a server that try to read its secrets, break out of
 * its folders, exhaust its memory or take over its environment. Real HTTP on 127.0.0.1, real
 * files and processes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import * as tar from 'tar';
import { ServerApi } from '../../src/agent/api';
import { NO_RETRY, TestflingerClient } from '../../src/agent/client';
import { systemClock } from '../../src/agent/clock';
import { AgentLogger } from '../../src/agent/logger';
import { DevServer } from '../../src/devserver';
import { devServerPerTest, jobState } from '../helpers/agent';
import { eventually, tempDir } from '../helpers/tmp';

let server: DevServer;
const agent = devServerPerTest((s) => (server = s));
const done = (id: string) => eventually(() => ['complete', 'cancelled'].includes(String(jobState(server, id))), `job ${id} to end`);
const modeOf = (file: string) => (fs.statSync(file).mode & 0o777).toString(8);

describe('job files are private to the agent user', () => {
  let umask: number;
  beforeEach(() => {
    // The loosest umask: modes must come from the agent, not from the environment.
    umask = process.umask(0);
  });
  afterEach(() => {
    process.umask(umask);
  });

  it('run and bookkeeping folders are 0700 and job files 0600, even when the folders existed', async () => {
    const base = tempDir('perm');
    const runBase = path.join(base, 'run');
    fs.mkdirSync(runBase, { mode: 0o755 });
    fs.chmodSync(runBase, 0o755);
    const a = agent({
      execution_basedir: runBase,
      test_command: 'stat -c "%a %n" "$PWD" testflinger.json testflinger-outcome.json test.log ../.*.agent ../.*.agent/job.json ../.*.agent/progress.json',
    });
    const id = server.submitJob({ job_queue: 'q1', test_data: { secrets: { API_TOKEN: 'hunter2' } } });
    await done(id);
    const lines = String(server.resultView(id)?.['test_output']).split('\n').filter((l) => /^\d{3} /.test(l));
    const modes = Object.fromEntries(lines.map((l) => [path.basename(l.slice(4)), l.slice(0, 3)]));
    expect(modes).toEqual({
      [id]: '700',
      'testflinger.json': '600',
      'testflinger-outcome.json': '600',
      'test.log': '600',
      [`.${id}.agent`]: '700',
      'job.json': '600',
      'progress.json': '600',
    });
    expect(modeOf(a.config.execution_basedir)).toBe('700');
  });

  it('results kept for a server that is away are 0700 folders of 0600 files', async () => {
    const a = agent({ test_command: 'mkdir -p artifacts && echo report > artifacts/r.txt' });
    server.failNext('POST', /^\/v1\/result\/[^/]+$/, 503, 1000, (b) => b['job_state'] === 'complete');
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    const kept = path.join(a.config.results_basedir, id);
    await eventually(() => fs.existsSync(path.join(kept, 'result.json')), 'results kept on disk');
    expect(modeOf(a.config.results_basedir)).toBe('700');
    expect(modeOf(kept)).toBe('700');
    for (const file of fs.readdirSync(kept)) expect([file, modeOf(path.join(kept, file))]).toEqual([file, '600']);
  });
});

/** A logger writing the agent's real log file, to read back what it wrote. */
function fileLog(): { log: AgentLogger; lines: () => string[] } {
  const file = path.join(tempDir('log'), 'agent.log');
  return { log: new AgentLogger('agent-1', 'DEBUG', file, true), lines: () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []) };
}
/** Every line the agent writes starts with its timestamp: nothing untrusted started a line. */
const LOG_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z agent-1 (DEBUG|INFO|WARNING|ERROR) /;
/** Waits until the agent has come round its loop `turns` more times. */
const morePolls = async (turns: number, agentId = 'agent-1') => {
  const target = server.polls(agentId) + turns;
  await eventually(() => server.polls(agentId) >= target, `${turns} more polls`);
};
/** Replies with `total` bytes in 64 KiB chunks (honouring back-pressure); resolves to what was sent. */
function streamBytes(res: http.ServerResponse, total: number, headers: Record<string, string> = {}): Promise<number> {
  res.writeHead(200, { 'content-type': 'application/json', ...headers });
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  let sent = 0;
  return new Promise((resolve) => {
    const pump = () => {
      while (sent < total && !res.destroyed) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.once('close', () => resolve(sent));
    pump();
  });
}

describe('the agent log', () => {
  it('writes one line per message, control characters escaped', () => {
    const { log, lines } = fileLog();
    log.warning('server said "boom\n2030-01-01T00:00:00.000Z agent-1 ERROR forged"\r\x1b[2J');
    expect(lines()).toHaveLength(1);
    expect(lines()[0]).toMatch(LOG_LINE);
    expect(lines()[0]).toContain('boom\\n2030-01-01T00:00:00.000Z agent-1 ERROR forged\"\\r\\x1b[2J');
  });
});

describe('a hostile server', () => {
  it('a job whose id is not a UUID is refused without touching the disk or building a URL from it; polling goes on', async () => {
    const base = tempDir('hostile');
    fs.mkdirSync(path.join(base, 'x'));
    fs.writeFileSync(path.join(base, 'x', 'keep.txt'), 'must survive');
    const { log, lines } = fileLog();
    const offer = (jobId: string) => (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ job_id: jobId, job_queue: 'q1', test_data: {} }));
    server.override('GET', /^\/v1\/job$/, offer('../x'));
    server.override('GET', /^\/v1\/job$/, offer('0d4c1b6e-1f0e-4a52-9d8e-6b1c2f3a4b5c\n2030-01-01T00:00:00.000Z agent-1 ERROR forged line'));
    server.override('GET', /^\/v1\/agents\/data\/agent-1$/, (_req, res) => res.writeHead(500).end('boom\n2030-01-01T00:00:00.000Z agent-1 INFO forged too'));
    agent({ execution_basedir: path.join(base, 'run') }, { log });
    await eventually(() => lines().filter((l) => /refused a job/.test(l)).length === 2, 'both jobs refused');
    await morePolls(2);
    expect(fs.readFileSync(path.join(base, 'x', 'keep.txt'), 'utf8')).toBe('must survive');
    expect(fs.existsSync(path.join(base, 'run')) ? fs.readdirSync(path.join(base, 'run')) : []).toEqual([]);
    expect(new Set(server.requests.map((r) => r.path))).toEqual(new Set(['/v1', '/v1/job', '/v1/agents/data/agent-1']));
    expect(lines().join('\n')).toContain('refused a job from the server: job_id: not a UUID (job_id "../x")');
    expect(lines().join('\n')).toContain('\\n2030-01-01T00:00:00.000Z agent-1 ERROR forged line');
    expect(lines().join('\n')).toContain('\\n2030-01-01T00:00:00.000Z agent-1 INFO forged too');
    for (const line of lines()) expect(line).toMatch(LOG_LINE);
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
    expect(server.resultView(id)).toMatchObject({ job_state: 'complete', test_status: 0 });
  });

  it('every value the agent puts in a URL path stays one segment', async () => {
    const api = new ServerApi(new TestflingerClient(server.url, systemClock, { retry: NO_RETRY }));
    await api.postResult('../../agents/data/x', { job_state: 'complete' }).catch(() => undefined);
    await api.postAgentData('a/b?c#d', { state: 'waiting' }).catch(() => undefined);
    expect(server.requests.map((r) => r.path)).toEqual(['/v1/result/..%2F..%2Fagents%2Fdata%2Fx', '/v1/agents/data/a%2Fb%3Fc%23d']);
  });

  it('a reply bigger than the cap is cut off and refused, not held in memory; polling goes on', async () => {
    const { log, lines } = fileLog();
    let sent: Promise<number> | undefined;
    server.override('GET', /^\/v1\/job$/, (_req, res) => void (sent = streamBytes(res, 200 * 1024 * 1024)));
    let declared: Promise<number> | undefined;
    server.override('GET', /^\/v1\/job$/, (_req, res) => void (declared = streamBytes(res, 64 * 1024 * 1024, { 'content-length': String(1.5 * 1024 ** 3) })));
    agent({}, { log });
    await eventually(() => lines().filter((l) => /exceeds the 16777216-byte limit/.test(l)).length === 2, 'both replies refused');
    expect(await sent).toBeLessThan(48 * 1024 * 1024);
    // Refused from its declared length, before the body was read.
    expect(await declared).toBeLessThan(16 * 1024 * 1024);
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await done(id);
  });

  it('attachments are streamed to disk under their own cap; a bigger archive is refused and removed', async () => {
    const a = agent({ attachments_max_bytes: 256 * 1024, test_command: 'ls -A attachments 2>/dev/null | wc -l' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    server.jobs.get(id)!.data['attachments_status'] = 'complete';
    let sent: Promise<number> | undefined;
    server.override('GET', new RegExp(`^/v1/job/${id}/attachments$`), (_req, res) => void (sent = streamBytes(res, 64 * 1024 * 1024)));
    await done(id);
    expect(String(server.resultView(id)?.['setup_output'])).toMatch(/attachments could not be fetched or unpacked: .*exceeds the 262144-byte limit/);
    expect(await sent).toBeLessThan(32 * 1024 * 1024);
    expect(String(server.resultView(id)?.['test_output'])).toMatch(/^0$/m);
    expect(fs.readdirSync(a.config.execution_basedir)).toEqual([]);
  });
});

describe('what a job may not do', () => {
  it('a secret split across two reads of the serial log is still masked', async () => {
    // The phase writes the first part of the secret, waits until the agent has read the file
    // and posted what it could (the line's start), then writes the rest: two reads for sure.
    const waitForFirstRead = 'id=$(sed -n \'s/.*"job_id": "\\([0-9a-f-]*\\)".*/\\1/p\' testflinger.json); for i in $(seq 1 200); do curl -s "$server_address/v1/result/$id/log/serial" | grep -q "serial console" && break; sleep 0.05; done';
    agent({ test_command: `printf "serial console line: key=s3cr" > test-serial.log; ${waitForFirstRead}; printf "et-value done\\n" >> test-serial.log` });
    const id = server.submitJob({ job_queue: 'q1', test_data: { secrets: { API_TOKEN: 's3cret-value' } } });
    await done(id);
    const fragments = server.fragments(id, 'serial').map((f) => f.log_data);
    expect(fragments.length).toBeGreaterThanOrEqual(2);
    expect(fragments.join('')).toBe('serial console line: key=**** done\n');
  });

  it('attachments lose setuid, setgid and sticky bits', async () => {
    const src = tempDir('att');
    fs.mkdirSync(path.join(src, 'test', 'shared'), { recursive: true });
    fs.writeFileSync(path.join(src, 'test', 'tool'), '#!/bin/sh\n');
    fs.chmodSync(path.join(src, 'test', 'tool'), 0o6755);
    fs.chmodSync(path.join(src, 'test', 'shared'), 0o1777);
    const archive = path.join(src, 'a.tar.gz');
    await tar.c({ gzip: true, cwd: src, file: archive }, ['test']);
    agent({ test_command: 'stat -c "%a %n" attachments/test/tool attachments/test/shared' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    server.attachments.set(id, fs.readFileSync(archive));
    server.jobs.get(id)!.data['attachments_status'] = 'complete';
    await done(id);
    const modes = String(server.resultView(id)?.['test_output']).split('\n').filter((l) => / attachments\//.test(l));
    expect(modes).toHaveLength(2);
    for (const line of modes) expect(line).toMatch(/^[0-7]{3} /);
  });

  it("secrets cannot replace PATH, TESTFLINGER_*, the agent's own variables, or use bad names", async () => {
    agent({ test_command: 'echo "path=$PATH"; echo "dir=${TESTFLINGER_AGENT_DIR-unset}"; echo "agent=$agent_id"; echo "good=$GOOD_TOKEN"' });
    const secrets = {
      PATH: '/attacker/bin',
      TESTFLINGER_AGENT_DIR: '/attacker/dir',
      agent_id: 'attacker-agent',
      'BAD-NAME': 'bad-name-value',
      GOOD_TOKEN: 'good-secret-value',
    };
    const id = server.submitJob({ job_queue: 'q1', test_data: { secrets } });
    await done(id);
    const out = String(server.resultView(id)?.['test_output']);
    expect(out).toContain(`path=${process.env['PATH']}`);
    expect(out).toMatch(/^dir=unset$/m);
    expect(out).toMatch(/^agent=agent-1$/m);
    expect(out).toMatch(/^good=\*\*\*\*$/m);
    for (const name of ['PATH', 'TESTFLINGER_AGENT_DIR', 'agent_id', 'BAD-NAME']) {
      expect(out).toContain(`WARNING: secret ${JSON.stringify(name)} not passed to the test phase`);
    }
    expect(out).not.toContain('GOOD_TOKEN" not passed');
    expect(out).not.toMatch(/attacker|bad-name-value|good-secret-value/);
  });

  it("secrets reach the test phase only: OPENSSL_CONF in provision_data or firmware_update_data loads nothing into those phases' Node", async () => {
    // What a job's test phase could have left on the host: an OpenSSL config that makes Node load
    // a module at start (a missing one here: Node then aborts, which shows the config was read).
    const conf = path.join(tempDir('openssl'), 'evil.cnf');
    fs.writeFileSync(conf, `nodejs_conf = conf\n[conf]\nproviders = providers\n[providers]\nevil = evil\n[evil]\nmodule = ${path.dirname(conf)}/evil.so\nactivate = 1\n`);
    const node = (phase: string) => `node -e 'console.log("${phase}: conf=" + (process.env.OPENSSL_CONF ?? "unset"))'`;
    agent({ provision_command: node('provision'), firmware_update_command: node('firmware'), test_command: 'echo "test: token=$API_TOKEN"' });
    const secrets = { OPENSSL_CONF: conf };
    const id = server.submitJob({ job_queue: 'q1', provision_data: { secrets }, firmware_update_data: { secrets }, test_data: { secrets: { API_TOKEN: 'hunter2' } } });
    await done(id);
    const view = server.resultView(id) ?? {};
    expect(view).toMatchObject({ provision_status: 0, firmware_update_status: 0, test_status: 0 });
    expect(String(view['provision_output'])).toMatch(/^provision: conf=unset$/m);
    expect(String(view['firmware_update_output'])).toMatch(/^firmware: conf=unset$/m);
    expect(String(view['provision_output'])).toContain('WARNING: provision_data.secrets not passed: only the test phase gets secrets, as upstream');
    expect(String(view['test_output'])).toMatch(/^test: token=\*\*\*\*$/m);
    // The config does reach Node when it is in its environment.
    expect(spawnSync(process.execPath, ['-e', '0'], { env: { ...process.env, OPENSSL_CONF: conf } }).status).not.toBe(0);
  });
});
