/**
 * The agent's lock (src/agent/lock.ts): one process per agent_id, which no other user can hold.
 * Real agent processes and real sockets; the other user is `nobody`, so this runs as root.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { DevServer } from '../../src/devserver';
import { acquireAgentLock, AgentLockError, lockName } from '../../src/agent/lock';
import { ECHO_COMMANDS } from '../helpers/agent';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

const NOBODY = 65534;
const AGENT_ID = 'lock-agent';
let server: DevServer;
const processes: ChildProcess[] = [];

beforeAll(async () => {
  server = new DevServer();
  await server.start();
});
afterEach(async () => {
  for (const p of processes.splice(0)) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
    }
  }
});
afterAll(async () => server.stop());

function writeConf(dir: string, basedir = dir): string {
  const file = path.join(dir, 'testflinger-agent.conf');
  fs.writeFileSync(file, stringify({
    agent_id: AGENT_ID, server_address: server.url, job_queues: ['q1'], polling_interval: 0.1,
    execution_basedir: path.join(basedir, 'run'), logging_basedir: path.join(basedir, 'logs'), results_basedir: path.join(basedir, 'results'),
    ...ECHO_COMMANDS,
  }));
  return file;
}

/** The child, killed after the test, with what it printed (stdout and stderr) so far. */
function tracked(child: ChildProcess): ChildProcess & { output: () => string } {
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  processes.push(child);
  return Object.assign(child, { output: () => output });
}

/** The real agent program, as supervisord would run it. */
function agentProcess(conf: string, env: Record<string, string> = {}): ChildProcess & { output: () => string } {
  return tracked(spawn(process.execPath, [path.join(repoRoot, 'dist', 'testflinger-agent.js'), '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env } }));
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((r) => child.once('exit', (code) => r(code)));
}

/** Node code run as another user, `nobody`. */
function asNobody(code: string): ChildProcess & { output: () => string } {
  return tracked(spawn(process.execPath, ['-e', code], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'pipe'] }));
}

const refusal = (pid: number | undefined) => new RegExp(`agent_id "${AGENT_ID}" is already run by another testflinger-agent \\(pid ${pid}: `);
const serving = (agent: { output: () => string }) => /serving queues/.test(agent.output());

const runsAsRoot = process.geteuid?.() === 0;
const rootIt = runsAsRoot ? it : it.skip;

rootIt('another user binding the abstract name the lock once had does not keep the agent from starting; a second start is still refused', async () => {
  const dir = tempDir('lock');
  const scope = { TESTFLINGER_AGENT_LOCK_SCOPE: dir };
  // What an earlier version bound: \0testflinger-agent/<sha256(scope \0 agent_id)>, in the network namespace every user shares.
  const abstractName = `\0testflinger-agent/${createHash('sha256').update(`${dir}\0${AGENT_ID}`).digest('hex').slice(0, 40)}`;
  const squatter = asNobody(`require('net').createServer((s) => s.end('1\\n')).listen(${JSON.stringify(abstractName)}, () => console.log('ready'))`);
  await eventually(() => /ready/.test(squatter.output()), 'the squatter holding the old name');
  const agent = agentProcess(writeConf(dir), scope);
  await eventually(() => serving(agent), 'the agent serving despite the squatter');
  const second = agentProcess(writeConf(tempDir('lock')), scope);
  expect(await exited(second)).toBe(3);
  expect(second.output()).toMatch(refusal(agent.pid));
});

rootIt("another user cannot make the lock in the agent's directory, nor start the agent in a directory others may write", async () => {
  const dir = tempDir('lock');
  fs.chmodSync(dir, 0o711);
  const squatter = asNobody(`require('net').createServer().on('error', (e) => { console.log(e.code); process.exit(0) }).listen(${JSON.stringify(path.join(dir, lockName(AGENT_ID)))})`);
  expect(await exited(squatter)).toBe(0);
  expect(squatter.output()).toMatch(/EACCES/);

  const shared = tempDir('lock-shared');
  fs.chmodSync(shared, 0o1777);
  const agent = agentProcess(writeConf(tempDir('lock')), { TESTFLINGER_AGENT_LOCK_SCOPE: shared });
  expect(await exited(agent)).toBe(3);
  expect(agent.output()).toMatch(/the lock directory ".*" may be written by other users \(mode 1777\): another user could hold this agent's lock/);
});

it('a 200-character logging_basedir: the lock is taken, left stale by kill -9, taken over by the next start, and refuses a second', async () => {
  const dir = tempDir('lock');
  const basedir = path.join(dir, 'x'.repeat(200 - dir.length - 1));
  expect(basedir).toHaveLength(200);
  const conf = writeConf(dir, basedir);
  const first = agentProcess(conf);
  await eventually(() => serving(first), 'the first agent serving');
  first.kill('SIGKILL');
  await exited(first);
  const next = agentProcess(conf);
  await eventually(() => serving(next), 'the next agent serving after the stale socket');
  const second = agentProcess(conf);
  expect(await exited(second)).toBe(3);
  expect(second.output()).toMatch(refusal(next.pid));
});

it('starts racing over a stale lock: exactly one takes it', async () => {
  const dir = tempDir('lock');
  const lock = path.join(dir, lockName(AGENT_ID));
  fs.mkdirSync(lock);
  // A socket whose process was killed: bound, nobody listening.
  const stale = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path.join(lock, 'dead'))}, () => process.kill(process.pid, 'SIGKILL'))`]);
  expect(stale.signal).toBe('SIGKILL');
  expect(fs.lstatSync(path.join(lock, 'dead')).isSocket()).toBe(true);
  const options = { agentId: AGENT_ID, directory: dir, confPath: path.join(dir, 'agent.conf'), pidFile: path.join(dir, 'agent.pid'), log: () => undefined };
  const starts = await Promise.allSettled(Array.from({ length: 6 }, () => acquireAgentLock(options)));
  const taken = starts.filter((s): s is PromiseFulfilledResult<() => void> => s.status === 'fulfilled');
  expect(taken).toHaveLength(1);
  for (const s of starts.filter((s) => s.status === 'rejected')) expect((s as PromiseRejectedResult).reason).toBeInstanceOf(AgentLockError);
  expect(fs.readdirSync(lock)).toHaveLength(1);
  taken[0]?.value();
  // Released: nothing left behind, and the next start takes it at once.
  expect(fs.readdirSync(dir).filter((n) => n.startsWith('.testflinger-agent-lock'))).toEqual([]);
  (await acquireAgentLock(options))();
});
