/** supervisord itself, in a sandbox root: its config, its limits, a restart, signals. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCommand } from '../../src/common/exec';
import { hostPaths } from '../../src/charm/paths';
import { sandboxDriver } from '../../src/charm/driver';
import { writeProgramFiles } from '../../src/charm/programfiles';
import { Supervisor } from '../../src/charm/supervisor';
import { TemplateRenderer } from '../../src/charm/templates';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

it('starts with limits for its agents, restarts to raise them, and signals programs by name', async () => {
  const paths = hostPaths(tempDir('sup'));
  const supervisor = new Supervisor(paths.supervisorSocket, sandboxDriver(paths, new TemplateRenderer(repoRoot)).supervisord);
  const pid = () => Number(fs.readFileSync(paths.supervisorPidFile, 'utf8'));
  try {
    expect(await supervisor.ensureRunning(2)).toBe('started');
    // supervisord answers on its socket a moment before it writes its pid file.
    await eventually(() => fs.existsSync(paths.supervisorPidFile), 'the pid file');
    expect(fs.readFileSync(paths.supervisordConf, 'utf8')).toMatch(/^minfds=1024$/m);
    const first = pid();
    expect(supervisor.writeLimits(2)).toBe(false);
    expect(supervisor.writeLimits(200)).toBe(true);
    expect(fs.readFileSync(paths.supervisordConf, 'utf8')).toMatch(/^minfds=2048$/m);
    await supervisor.restart();
    await eventually(() => fs.existsSync(paths.supervisorPidFile) && pid() !== first, 'a new supervisord');

    const recorder = path.join(paths.root, 'record.sh');
    fs.writeFileSync(recorder, `#!/bin/sh\ntrap 'echo USR1 >> ${paths.root}/signals' USR1\nwhile true; do sleep 0.1; done\n`, { mode: 0o755 });
    writeProgramFiles(paths, new Map([['rec', `; Managed by the testflinger-agent-host charm\n[program:rec]\ncommand=${recorder}\nstartsecs=0\n`]]));
    await supervisor.update();
    await eventually(async () => (await supervisor.status()).find((s) => s.name === 'rec')?.state === 'RUNNING', 'rec RUNNING');
    expect(await supervisor.signal(['rec'])).toEqual({ signalled: ['rec'], notRunning: [] });
    await eventually(() => fs.existsSync(path.join(paths.root, 'signals')), 'USR1 recorded by the program');
    await runCommand('supervisorctl', ['-c', paths.supervisordConf, 'stop', 'rec']);
    expect(await supervisor.signal(['rec'])).toEqual({ signalled: [], notRunning: ['rec'] });
  } finally {
    await supervisor.shutdown();
  }
});

it('starts, stops and tails programs by name: "already so" is no refusal, an unknown name is refused, and a stop waits until the program is down', async () => {
  const paths = hostPaths(tempDir('sup'));
  const supervisor = new Supervisor(paths.supervisorSocket, sandboxDriver(paths, new TemplateRenderer(repoRoot)).supervisord);
  const program = path.join(paths.root, 'talk.sh');
  // It ignores TERM for a moment, so a stop that did not wait would find it still STOPPING.
  fs.writeFileSync(program, `#!/bin/sh\ntrap 'sleep 1; exit 0' TERM\necho hello from talk\nwhile true; do sleep 0.1; done\n`, { mode: 0o755 });
  try {
    expect(await supervisor.processes()).toBeNull();
    await supervisor.ensureRunning(1);
    writeProgramFiles(paths, new Map([['talk', `; Managed by the testflinger-agent-host charm\n[program:talk]\ncommand=${program}\nstartsecs=0\nredirect_stderr=true\n`]]));
    await supervisor.update();
    await eventually(async () => (await supervisor.status()).find((s) => s.name === 'talk')?.state === 'RUNNING', 'talk RUNNING');
    const [talk] = (await supervisor.processes()) ?? [];
    expect(talk).toMatchObject({ name: 'talk', state: 'RUNNING', exitStatus: 0 });
    expect(talk?.pid).toBeGreaterThan(0);
    expect(talk?.now).toBeGreaterThanOrEqual(talk?.start ?? Infinity);

    expect(await supervisor.start(['talk'])).toEqual({});
    expect(await supervisor.start(['nope'])).toEqual({ nope: expect.stringMatching(/^BAD_NAME/) });
    await eventually(async () => (await supervisor.tailLog('talk', 1024)).text.includes('hello from talk'), 'the program log');
    expect(await supervisor.tailLog('talk', 4)).toEqual({ text: 'alk\n', cut: true });

    expect(await supervisor.stop(['talk', 'nope'])).toEqual({ nope: expect.stringMatching(/^BAD_NAME/) });
    expect((await supervisor.status()).find((s) => s.name === 'talk')?.state).toBe('STOPPED');
    expect(await supervisor.stop(['talk'])).toEqual({});
    expect(await supervisor.signal(['talk', 'nope'])).toEqual({ signalled: [], notRunning: ['talk', 'nope'] });
  } finally {
    await supervisor.shutdown();
  }
});
