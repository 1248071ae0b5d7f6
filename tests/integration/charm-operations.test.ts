/**
 * The operator actions and the update-status health loop through the real dispatch, emulated
 * hook tools and a real supervisord, with real agents: one busy with a job, one stalled (its
 * server unreachable), one idle, and one made to crash at start.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { SCRAPE_DEADLINE_MS, SCRAPES_TOTAL_DEADLINE_MS } from '../../src/charm/operations/metrics';
import { loadHostState, saveHostState } from '../../src/charm/state';
import { labAgentConf } from '../helpers/charm';
import { trickleMetrics } from '../helpers/charm-operations';
import { ConfigRepo } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually, onCleanup } from '../helpers/tmp';

jest.setTimeout(180_000);

type Results = Record<string, unknown>;

/** One lab for the file: the scenarios run in order, as an operator's morning would. */
let sandbox: Sandbox;
let server: DevServer;
let repo: ConfigRepo;

function conf(name: string, extra: Record<string, unknown> = {}): string {
  const phases = { setup_command: 'tf-setup', provision_command: 'tf-provision', test_command: 'tf-test', cleanup_command: 'tf-cleanup' };
  return labAgentConf(name, { server_address: server.url, polling_interval: 2, ...phases, ...extra }, path.join(sandbox.root, 'tmp/testflinger', name));
}

function pids(): Record<string, number | undefined> {
  return Object.fromEntries([...sandbox.programs()].map(([name, p]) => [name, p.pid]));
}

async function action(name: string, params: Record<string, unknown> = {}): Promise<Results> {
  const { results, failed, message } = await sandbox.action(name, params);
  if (failed) throw new Error(`${name} failed: ${message}`);
  return results as Results;
}

/** The agent's own state, as agent-status reads it from its metrics. */
async function agentState(name: string): Promise<string | undefined> {
  return ((await action('agent-status', { agents: name }))['agents'] as Record<string, Record<string, string>>)[name]?.['agent-state'];
}

const agentConfFile = (name: string) => path.join(sandbox.root, 'srv/agent-configs/lab1', name, 'testflinger-agent.conf');

beforeAll(async () => {
  server = new DevServer();
  await server.start();
  onCleanup(() => server.stop());
  sandbox = new Sandbox();
  repo = new ConfigRepo('lab1');
  repo.addAgent('busy', conf('busy')).addAgent('idle', conf('idle')).addAgent('crashy', conf('crashy'));
  // Its server never answers: it runs, but never polls.
  repo.addAgent('stalled', conf('stalled', { server_address: 'http://127.0.0.1:1' }));
  repo.commit('the lab');
  sandbox.setConfig({ 'config-repo': repo.url, 'config-dir': 'lab1', 'testflinger-server': server.url });
  await sandbox.hook('install');
  await sandbox.hook('config-changed');
  await eventually(() => ['busy', 'idle', 'crashy', 'stalled'].every((n) => sandbox.programs().get(n)?.state === 'RUNNING'), 'agents RUNNING');
  await eventually(() => ['busy', 'idle', 'crashy'].every((n) => server.agents.get(n)?.['state'] === 'waiting'), 'agents waiting');
  server.submitJob({ job_queue: 'busy-queue', test_data: { test_cmds: 'sleep 120' } });
  await eventually(() => server.agents.get('busy')?.['state'] === 'test', 'busy in its test phase', 30_000);
});

it('agent-status: every agent with its facts, and the summary line', async () => {
  // The stalled agent has run past 3 polling intervals (and 10 s) without a poll.
  await new Promise((r) => setTimeout(r, 11_000));
  const results = await action('agent-status');
  expect(results['summary']).toBe('4 agents: 2 waiting, 1 test, 1 stale');
  const agents = results['agents'] as Record<string, Record<string, string>>;
  expect(agents['busy']).toMatchObject({ supervisor: 'RUNNING', 'agent-state': 'test', busy: 'yes', 'offline-marker': 'none' });
  expect(agents['busy']?.['job']).toMatch(/^[0-9a-f-]{36}$/);
  expect(agents['idle']).toMatchObject({ supervisor: 'RUNNING', 'agent-state': 'waiting', busy: 'no' });
  expect(agents['idle']?.['pid']).toBe(String(pids()['idle']));
  expect(agents['stalled']?.['since-last-poll']).toMatch(/^\d+s \(stale\)$/);
  process.stdout.write(`agent-status: ${JSON.stringify(results, null, 1)}\n`);
});

it('set-offline: the busy agent finishes its job first; set-online brings both back', async () => {
  const off = await action('set-offline', { agents: 'busy,idle', reason: 'repair: serial cable' });
  expect(off).toEqual({ offline: 'busy,idle', 'finishing-a-job': 'busy', refused: 'none' });
  // The idle agent sees its marker at its next poll; the busy one goes on with its job.
  await eventually(async () => agentState('idle').then((s) => s === 'offline'), 'idle offline', 15_000);
  const status = await action('agent-status', { agents: 'busy,idle' });
  expect(status['summary']).toBe('2 agents: 1 test, 1 offline (repair: serial cable)');
  process.stdout.write(`set-offline: ${JSON.stringify(off, null, 1)}\nagent-status: ${JSON.stringify(status['summary'])}\n`);
  const on = await action('set-online', { agents: 'busy,idle' });
  expect(on['markers-removed']).toBe([path.join(sandbox.root, 'tmp/TESTFLINGER-DEVICE-OFFLINE-busy'), path.join(sandbox.root, 'tmp/TESTFLINGER-DEVICE-OFFLINE-idle')].join(','));
  await eventually(async () => (await agentState('idle')) === 'waiting', 'idle waiting again', 15_000);
});

it('restart-agents mode=now refuses the busy agent and restarts the idle one; the busy one keeps its pid', async () => {
  const before = pids();
  const out = await action('restart-agents', { agents: 'busy,idle', mode: 'now' });
  expect(out).toMatchObject({ restarted: 'idle', 'refused-busy': 'busy (running a job; force=true stops it)', failed: 'none' });
  await eventually(() => sandbox.programs().get('idle')?.state === 'RUNNING' && pids()['idle'] !== before['idle'], 'idle restarted');
  expect(pids()['busy']).toBe(before['busy']);
  expect(server.agents.get('busy')?.['state']).toBe('test');
});

it('agent-logs: the tail of one log, from supervisord', async () => {
  const out = await action('agent-logs', { agent: 'idle', lines: 5 });
  expect(Number(out['lines'])).toBeGreaterThan(0);
  expect(Number(out['lines'])).toBeLessThanOrEqual(5);
  expect(String(out['log']).split('\n')).toHaveLength(Number(out['lines']));
  process.stdout.write(`agent-logs: ${JSON.stringify(out, null, 1)}\n`);
});

it('check-drift finds a hand-edited program file; fix=true restores it and restarts no other agent', async () => {
  const file = sandbox.programFile('idle');
  const good = fs.readFileSync(file, 'utf8');
  const edit = () => fs.writeFileSync(file, good.replace('startsecs=1', 'startsecs=2').replace('stopwaitsecs=60', 'stopwaitsecs=5'));
  // An edit supervisord never read: restored, and nothing restarts.
  edit();
  const unread = pids();
  expect(await action('check-drift')).toEqual({ count: '1', drift: 'idle.conf: 2 lines differ (startsecs, stopwaitsecs)' });
  expect(await action('check-drift', { fix: true })).toMatchObject({ remaining: 'none', 'restarted-now': 'none' });
  expect(fs.readFileSync(file, 'utf8')).toBe(good);
  expect(pids()).toEqual(unread);
  edit();
  // supervisord reads the edit (as `supervisorctl update` would): now the agent runs from it.
  sandbox.supervisorctl('update');
  await eventually(() => sandbox.programs().get('idle')?.state === 'RUNNING', 'idle running its edited file');
  const before = pids();
  const fixed = await action('check-drift', { fix: true });
  expect(fixed).toMatchObject({ count: '1', remaining: 'none', 'restarted-now': 'idle', 'asked-to-restart': 'none' });
  expect(fs.readFileSync(file, 'utf8')).toBe(good);
  await eventually(() => sandbox.programs().get('idle')?.state === 'RUNNING', 'idle running again');
  const after = pids();
  for (const name of ['busy', 'crashy', 'stalled']) expect(after[name]).toBe(before[name]);
  expect(await action('check-drift')).toEqual({ count: '0', drift: 'none' });
});

it('update-status starts a crashed agent again once its backoff has passed, and names it meanwhile', async () => {
  const confFile = agentConfFile('crashy');
  const confText = fs.readFileSync(confFile, 'utf8');
  // Every start from now on fails at once: its conf is gone.
  fs.rmSync(confFile);
  process.kill(sandbox.programs().get('crashy')?.pid as number, 'SIGKILL');
  await eventually(() => ['EXITED', 'FATAL'].includes(sandbox.programs().get('crashy')?.state ?? ''), 'crashy down', 30_000, 200);
  await sandbox.hook('update-status');
  const state = () => loadHostState(sandbox.paths);
  expect(state().health['crashy']?.restarts).toBe(1);
  await eventually(() => ['EXITED', 'FATAL'].includes(sandbox.programs().get('crashy')?.state ?? ''), 'crashy down again', 30_000, 200);
  // Fixed, but within its backoff: left alone.
  fs.writeFileSync(confFile, confText);
  await sandbox.hook('update-status');
  expect(['EXITED', 'FATAL']).toContain(sandbox.programs().get('crashy')?.state);
  // Named with its own last error: its conf was gone when it last tried.
  expect(sandbox.status?.message).toMatch(/crashy cannot start: "[^"]*crashy\/testflinger-agent\.conf'"/);
  // Its backoff has passed (as if a minute went by): the next update-status starts it.
  const passed = state();
  passed.health['crashy'] = { restarts: 1, nextTryAt: Date.now() - 1 };
  saveHostState(sandbox.paths, passed);
  await sandbox.hook('update-status');
  await eventually(() => sandbox.programs().get('crashy')?.state === 'RUNNING', 'crashy RUNNING', 15_000);
  expect(state().health['crashy']?.restarts).toBe(2);
  expect(sandbox.status?.status).toBe('blocked');
  // Read as the hook ends, when supervisord has just started it again: named with the error of its
  // last try after the crash loop (or, on a host slow enough for it to be RUNNING by then, the
  // health summary), the whole line within 200 characters.
  expect(sandbox.status?.message).toMatch(/^crash loop: crashy \(2 restarts, next restart in \d+m.* at the earliest\); (crashy cannot start \(retrying\): ".*"; 3 of 4 agents running|4 agents: .*)(; stale: .*)?$/);
  expect(sandbox.status?.message.length).toBeLessThanOrEqual(200);
  process.stdout.write(`status: ${JSON.stringify(sandbox.status)}\n`);
});

it('update-status ends within a fixed bound when a listener on an agent\'s metrics port answers one byte a second', async () => {
  const state = loadHostState(sandbox.paths);
  const agentPort = state.ports['stalled'];
  // What the charm believes is the agent's port now serves a byte a second, for ever.
  state.ports['stalled'] = await trickleMetrics();
  saveHostState(sandbox.paths, state);
  const started = Date.now();
  await sandbox.hook('update-status');
  const took = Date.now() - started;
  process.stdout.write(`update-status with a 1-byte-a-second listener: ${took} ms\n`);
  // One scrape deadline, plus a hook's own start-up on a loaded machine: generous, but fixed.
  expect(took).toBeLessThan(SCRAPES_TOTAL_DEADLINE_MS + 10 * SCRAPE_DEADLINE_MS);
  expect(sandbox.status?.message).toMatch(/4 agents: .*1 (no metrics|stale)/);
  const back = loadHostState(sandbox.paths);
  back.ports['stalled'] = agentPort as number;
  saveHostState(sandbox.paths, back);
});
