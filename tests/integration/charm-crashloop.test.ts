/**
 * Agents that cannot start, on a real supervisord: they are not respawned forever, and the status
 * names each with its own last error, read from the log supervisord keeps of it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { STATUS_MAX } from '../../src/charm/unitstatus';
import { ConfigRepo, agentConf } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { expectStartingOrRunning } from '../helpers/status';
import { eventually, onCleanup } from '../helpers/tmp';

jest.setTimeout(90_000);

/** A sandbox whose config repo has agent-1 and agent-2, each conf changed by `override` if given. */
async function labWithTwoAgents(override: (name: string, base: string) => Record<string, unknown> = () => ({})) {
  const server = new DevServer();
  await server.start();
  onCleanup(() => server.stop());
  const sandbox = new Sandbox();
  const base = path.join(sandbox.root, 'tmp/testflinger');
  const conf = (name: string) =>
    agentConf(name, {
      server_address: server.url,
      execution_basedir: `${base}/${name}/run`,
      logging_basedir: `${base}/${name}/logs`,
      results_basedir: `${base}/${name}/results`,
      ...override(name, base),
    });
  const repo = new ConfigRepo('lab1');
  repo.addAgent('agent-1', conf('agent-1')).addAgent('agent-2', conf('agent-2'));
  repo.commit('two agents');
  sandbox.setConfig({ 'config-repo': repo.url, 'config-dir': 'lab1' });
  return { sandbox, base };
}

const stoppedForGood = (sandbox: Sandbox, name: string) => ['EXITED', 'FATAL'].includes(sandbox.programs().get(name)?.state ?? '');

it('the first config-changed does not wait for agents to start: it says they are starting, and update-status says they run', async () => {
  const { sandbox } = await labWithTwoAgents();
  await sandbox.hook('install');
  await sandbox.hook('config-changed');
  // Read once at the end of the hook, right after supervisord spawned them (startsecs=1): starting,
  // unless this host was slow enough for them to be RUNNING already (tests/unit has the exact case).
  expectStartingOrRunning(sandbox.status, 2);
  await eventually(() => [...sandbox.programs().values()].every((p) => p.state === 'RUNNING'), 'both agents RUNNING', 30_000, 200);
  await sandbox.hook('update-status');
  expect(sandbox.status?.status).toBe('active');
  expect(sandbox.status?.message).toMatch(/^2 agents: /);
});

it('an agent whose conf is bad stops being restarted and blocks the unit, naming it with its error; the other keeps running', async () => {
  const { sandbox } = await labWithTwoAgents();
  await sandbox.hook('install');
  await sandbox.hook('config-changed');
  await eventually(() => sandbox.programs().get('agent-2')?.state === 'RUNNING', 'agent-2 RUNNING', 30_000, 200);

  // The checkout is the charm's; here the test takes agent-2's conf away and stops the agent,
  // so that every start from now on fails at once.
  fs.rmSync(path.join(sandbox.root, 'srv/agent-configs/lab1/agent-2/testflinger-agent.conf'));
  process.kill(sandbox.programs().get('agent-2')?.pid as number, 'SIGKILL');
  // EXITED when it died after startsecs (exit 2 is final), FATAL when within (three quick tries).
  await eventually(() => stoppedForGood(sandbox, 'agent-2'), 'agent-2 EXITED or FATAL', 30_000, 200);
  // supervisord itself gives up: nothing more is spawned while a config-changed (which leaves
  // agents alone) runs and reports it.
  const log = fs.readFileSync(path.join(sandbox.root, 'var/log/supervisor/supervisord.log'), 'utf8');
  await sandbox.hook('config-changed');
  expect(sandbox.status?.status).toBe('blocked');
  expect(sandbox.status?.message).toMatch(/^agent-2 cannot start: "[^"]*agent-2\/testflinger-agent\.conf'"; 1 of 2 agents running$/);
  expect(fs.readFileSync(path.join(sandbox.root, 'var/log/supervisor/supervisord.log'), 'utf8').slice(log.length)).not.toMatch(/spawned: 'agent-2'/);
  // update-status's health loop tries it once more, within its backoff, and still names it with
  // the error of its last try (the hook does not wait to see this one fail).
  await sandbox.hook('update-status');
  expect(sandbox.status?.status).toBe('blocked');
  expect(sandbox.status?.message).toMatch(/^agent-2 cannot start( \(retrying\))?: "[^"]*agent-2\/testflinger-agent\.conf'"; 1 of 2 agents running/);
  expect(sandbox.programs().get('agent-1')?.state).toBe('RUNNING');
});

it('an agent that fails as it starts (its log folder cannot be made) is named with its own last error line, within 200 characters', async () => {
  // A conf the charm accepts, but whose logging_basedir sits under a regular file: the agent's
  // first act, making that folder, fails every time.
  const { sandbox, base } = await labWithTwoAgents((name, b) => (name === 'agent-2' ? { logging_basedir: `${b}/not-a-folder/logs` } : {}));
  fs.mkdirSync(base, { recursive: true });
  fs.writeFileSync(path.join(base, 'not-a-folder'), 'a file\n');
  await sandbox.hook('install');
  await sandbox.hook('config-changed');
  await eventually(() => stoppedForGood(sandbox, 'agent-2'), 'agent-2 FATAL', 30_000, 200);

  await sandbox.hook('config-changed');
  const message = sandbox.status?.message ?? '';
  expect(sandbox.status?.status).toBe('blocked');
  expect(message).toMatch(/^agent-2 cannot start: "fatal: ENOTDIR: not a directory, mkdir '[^"]*"; 1 of 2 agents running$/);
  // A long path is cut in its middle: the end, which says what failed, stays.
  expect(message).toMatch(/not-a-folder\/logs'"; 1 of 2 agents running$/);
  expect(message.length).toBeLessThanOrEqual(STATUS_MAX);
  // The stack the agent printed before it is in the log, not in the status.
  expect(message).not.toMatch(/ at /);
});
