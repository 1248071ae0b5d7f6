/**
 * An agent that cannot start (its conf vanished from under it) on a real supervisord: it is not
 * respawned forever, and the status names it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { ConfigRepo, agentConf } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually, onCleanup } from '../helpers/tmp';

jest.setTimeout(90_000);

it('an agent whose conf is bad stops being restarted and blocks the unit, naming it; the other keeps running', async () => {
  const server = new DevServer();
  await server.start();
  onCleanup(() => server.stop());
  const sandbox = new Sandbox();
  const base = path.join(sandbox.root, 'tmp/testflinger');
  const conf = (name: string) =>
    agentConf(name, { server_address: server.url, execution_basedir: `${base}/${name}/run`, logging_basedir: `${base}/${name}/logs`, results_basedir: `${base}/${name}/results` });
  const repo = new ConfigRepo('lab1');
  repo.addAgent('agent-1', conf('agent-1')).addAgent('agent-2', conf('agent-2'));
  repo.commit('two agents');
  sandbox.setConfig({ 'config-repo': repo.url, 'config-dir': 'lab1' });
  await sandbox.hook('install');
  await sandbox.hook('config-changed');
  expect(sandbox.status).toEqual({ status: 'active', message: '2 agents running' });

  // The checkout is the charm's; here the test takes agent-2's conf away and stops the agent,
  // so that every start from now on fails at once.
  fs.rmSync(path.join(sandbox.root, 'srv/agent-configs/lab1/agent-2/testflinger-agent.conf'));
  process.kill(sandbox.programs().get('agent-2')?.pid as number, 'SIGKILL');
  // EXITED when it died after startsecs (exit 2 is final), FATAL when within (three quick tries).
  await eventually(() => ['EXITED', 'FATAL'].includes(sandbox.programs().get('agent-2')?.state ?? ''), 'agent-2 EXITED or FATAL', 30_000, 200);
  // supervisord itself gives up: nothing more is spawned while a config-changed (which leaves
  // agents alone) runs and reports it.
  const log = fs.readFileSync(path.join(sandbox.root, 'var/log/supervisor/supervisord.log'), 'utf8');
  await sandbox.hook('config-changed');
  expect(sandbox.status?.status).toBe('blocked');
  expect(sandbox.status?.message).toMatch(/^agent-2 (EXITED|FATAL); 1 of 2 agents running/);
  expect(fs.readFileSync(path.join(sandbox.root, 'var/log/supervisor/supervisord.log'), 'utf8').slice(log.length)).not.toMatch(/spawned: 'agent-2'/);
  // update-status's health loop tries it once more, within its backoff, and still names it.
  await sandbox.hook('update-status');
  expect(sandbox.status?.status).toBe('blocked');
  expect(sandbox.status?.message).toMatch(/agent-2/);
  expect(sandbox.programs().get('agent-1')?.state).toBe('RUNNING');
});
