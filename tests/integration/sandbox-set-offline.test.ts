/**
 * set-offline and set-online on a sandbox host (AGENT_HOST_ROOT, the real dispatch and
 * supervisord), as the README types them: the marker lands in the root's /tmp, which the sandbox
 * has as a unit has it, whatever the agents' own folders are.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseJujuRunArgs } from '../../src/ops/testing';
import { labRepo } from '../helpers/charm';
import { Sandbox } from '../helpers/sandbox';
import { shellWords } from '../helpers/shellwords';

jest.setTimeout(90_000);

/** The action and params of a `juju run` command line, as Juju's client reads them. */
function typed(command: string): { action: string; params: Record<string, unknown> } {
  return parseJujuRunArgs(shellWords(command).slice(2));
}

it('set-offline writes each agent marker with the reason into the root /tmp (sticky, as on a unit); set-online removes them', async () => {
  // The agents' run, log and results folders are outside the root: nothing else makes its /tmp.
  const repo = labRepo('busy', 'idle');
  const sandbox = new Sandbox({ 'config-repo': repo.url, 'config-dir': 'lab1' });
  await sandbox.hook('install');
  await sandbox.hook('config-changed');

  const off = typed('juju run testflinger-agent-host/0 set-offline --string-args agents=busy,idle reason="repair: serial cable"');
  const outcome = await sandbox.action(off.action, off.params);
  expect(outcome.failed ? outcome.message : 'ok').toBe('ok');
  const tmp = path.join(sandbox.root, 'tmp');
  expect(fs.statSync(tmp).mode & 0o7777).toBe(0o1777);
  for (const agent of ['busy', 'idle']) expect(fs.readFileSync(path.join(tmp, `TESTFLINGER-DEVICE-OFFLINE-${agent}`), 'utf8')).toBe('repair: serial cable\n');

  const on = typed('juju run testflinger-agent-host/0 set-online agents=busy,idle');
  const back = await sandbox.action(on.action, on.params);
  expect(back.failed ? back.message : 'ok').toBe('ok');
  expect(fs.readdirSync(tmp).filter((f) => f.startsWith('TESTFLINGER-DEVICE-OFFLINE'))).toEqual([]);
});
