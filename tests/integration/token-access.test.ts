/**
 * The refresh token on a unit: root's alone (0600). The agent's root wrapper opens it and the
 * agent signs in through that descriptor; a job, run as the agent's own user without the sandbox,
 * cannot read the file, reach the descriptor, or open it through /proc; another user cannot read
 * it. A renewal is written in place, so a descriptor opened before sees it. Real wrapper, real
 * agent, real server with auth on 127.0.0.1 (root needed).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { obtainRefreshToken, prepareRootTokenFile, TOKEN_FILE_SIZE, writeTokenFile } from '../../src/charm/auth';
import { DevServer } from '../../src/devserver';
import { removeChildCgroup } from '../helpers/cgroup';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

/** `daemon` (uid 1, group 1) stands for an agent's user; `bin` (2) for another agent's. */
const AGENT_USER = 'daemon';
const AGENT_UID = 1;
const OTHER_UID = 2;
const ROOT = { uid: 0, gid: 0 };
const itAsRoot = process.getuid?.() === 0 ? it : it.skip;

function access(p: string): { uid: number; gid: number; mode: number; size: number } {
  const stat = fs.statSync(p);
  return { uid: stat.uid, gid: stat.gid, mode: stat.mode & 0o777, size: stat.size };
}

describe('the token file on a unit', () => {
  itAsRoot('is made blank, then written and renewed in place: a descriptor opened before sees the renewal', () => {
    const file = path.join(tempDir('token'), 'refresh_token');
    prepareRootTokenFile(file);
    expect(access(file)).toEqual({ uid: 0, gid: 0, mode: 0o600, size: TOKEN_FILE_SIZE });
    const fd = fs.openSync(file, 'r');
    try {
      writeTokenFile(file, 'first', Date.now(), ROOT);
      expect(JSON.parse(readAt0(fd)).refresh_token).toBe('first');
      writeTokenFile(file, 'second', Date.now(), ROOT);
      expect(JSON.parse(readAt0(fd)).refresh_token).toBe('second');
      expect(access(file)).toEqual({ uid: 0, gid: 0, mode: 0o600, size: TOKEN_FILE_SIZE });
    } finally {
      fs.closeSync(fd);
    }
  });

  itAsRoot('from before (root:testflinger-agents 0640) is closed to root alone, its token kept', () => {
    const file = path.join(tempDir('token'), 'refresh_token');
    fs.writeFileSync(file, '{"refresh_token":"kept","obtained_at":"2026-01-01T00:00:00.000Z"}\n', { mode: 0o640 });
    fs.chownSync(file, 0, 12345);
    prepareRootTokenFile(file);
    expect(access(file)).toEqual({ uid: 0, gid: 0, mode: 0o600, size: TOKEN_FILE_SIZE });
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).refresh_token).toBe('kept');
  });
});

function readAt0(fd: number): string {
  const buffer = Buffer.alloc(TOKEN_FILE_SIZE * 2);
  return buffer.subarray(0, fs.readSync(fd, buffer, 0, buffer.length, 0)).toString('utf8');
}

describe('an agent started by the root wrapper', () => {
  let server: DevServer;
  let agent: ChildProcess | undefined;
  const cgroupName = `token-test-${process.pid}`;

  beforeEach(async () => {
    server = new DevServer({ auth: { clientId: 'lab', secret: 's3', accessTtlS: 600 } });
    await server.start();
  });
  afterEach(async () => {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent?.once('exit', r));
    }
    await server.stop();
    removeChildCgroup(cgroupName);
  });

  itAsRoot('signs in through the descriptor; its job, as its user, cannot read the token by any way tried', async () => {
    const tokenDir = tempDir('token');
    fs.chmodSync(tokenDir, 0o755);
    const tokenFile = path.join(tokenDir, 'refresh_token');
    const refreshToken = await obtainRefreshToken(server.url, { clientId: 'lab', secretKey: 's3' });
    prepareRootTokenFile(tokenFile);
    writeTokenFile(tokenFile, refreshToken, Date.now(), ROOT);

    const dir = tempDir('token-agent');
    fs.chownSync(dir, AGENT_UID, AGENT_UID);
    const logs = path.join(dir, 'logs');
    const probes = [
      `cat ${tokenFile} >/dev/null 2>&1; echo "file=$?"`,
      `echo "fds=$(for n in 3 4 5 6 7 8 9; do (cat <&$n) 2>/dev/null; done | grep -c refresh_token)"`,
      `cat /proc/$(cat ${logs}/agent-t.pid)/fd/3 >/dev/null 2>&1; echo "procfd=$?"`,
      `echo "env=$TESTFLINGER_TOKEN_FD"`,
    ].join('\n');
    const conf = path.join(dir, 'agent.conf');
    fs.writeFileSync(conf, JSON.stringify({
      agent_id: 'agent-t', server_address: server.url, job_queues: ['q1'], polling_interval: 0.1,
      execution_basedir: path.join(dir, 'run'), logging_basedir: logs, results_basedir: path.join(dir, 'results'),
      setup_command: 'true', test_command: probes, cleanup_command: 'true',
    }));
    const wrapper = path.join(repoRoot, 'tf-cmd-scripts', 'testflinger-agent-contained');
    agent = spawn('sh', [wrapper, AGENT_USER, cgroupName, process.execPath, path.join(repoRoot, 'dist', 'testflinger-agent.js'), '-c', conf, '--token-file', tokenFile], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, TESTFLINGER_AGENT_LOCK_SCOPE: dir },
      stdio: 'ignore',
    });

    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, `job ${id} done`, 60_000);
    // Signed in: every agent call needs a Bearer token here, and the agent got one from the refresh token.
    expect(server.requests.some((r) => r.path === '/v1/oauth2/refresh')).toBe(true);
    const seen = Object.fromEntries([...String(server.resultView(id)?.['test_output']).matchAll(/^(\w+)=(\S*)$/gm)].map((m) => [m[1], m[2]]));
    expect(seen).toMatchObject({ file: '1', fds: '0', procfd: '1' });
    // Another agent's user cannot read it either.
    expect(spawnSync('setpriv', [`--reuid=${OTHER_UID}`, `--regid=${OTHER_UID}`, '--clear-groups', '--', 'cat', tokenFile]).status).not.toBe(0);
  }, 90_000);
});
