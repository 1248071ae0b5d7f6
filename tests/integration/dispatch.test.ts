/**
 * The framework end to end: Juju runs `dispatch` (or an old-style hooks/<name>) with nothing but
 * its own environment, and the charm speaks to hook tools that answer, and refuse, like Juju's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dispatchEvent } from '../../src/hooktools/emulator';
import { Sandbox } from '../helpers/sandbox';
import { repoRoot, tempDir } from '../helpers/tmp';

describe('dispatch as Juju runs it', () => {
  it('runs a hook: the event reaches the charm, which sets its status through status-set', async () => {
    const sandbox = new Sandbox({ 'config-dir': 'lab1' });
    const run = await sandbox.hook('update-status');
    expect(run.stdout).toBe('');
    expect(sandbox.status).toEqual({ status: 'blocked', message: 'config-repo is not set (the git repository of agent configs); host unchanged' });
    const calls = sandbox.unit.state().calls;
    expect(calls).toContainEqual(['config-get', '--format=json']);
    expect(calls).toContainEqual(['status-set', '--application=False', 'blocked', '--', 'config-repo is not set (the git repository of agent configs); host unchanged']);
    expect(calls.every(([tool]) => tool !== 'action-get')).toBe(true);
  });

  it('runs an action: params come from action-get, a failure goes through action-fail', async () => {
    const sandbox = new Sandbox({ 'config-dir': 'lab1' });
    const { result, failed, message } = await sandbox.action('update-configs');
    expect(result.exitCode).toBe(0);
    expect(failed).toBe(true);
    expect(message).toMatch(/cannot run update-configs: config-repo is not set/);
    expect(sandbox.unit.state().calls).toContainEqual(['action-get', '--format=json']);
  });

  it('refuses action params that the action schema does not declare', async () => {
    const sandbox = new Sandbox({ 'config-dir': 'lab1' });
    const { failed, message } = await sandbox.action('update-testflinger', { branch: 'x', extra: 1 });
    expect(failed).toBe(true);
    expect(message).toMatch(/invalid parameters for update-testflinger: params: Unrecognized key\(s\) in object: 'extra'/);
  });

  it('a hook error is logged through juju-log and exits non-zero', async () => {
    const sandbox = new Sandbox({ 'config-repo': '/x', 'config-dir': 'lab1' });
    // A state file that is not JSON makes the charm fail while starting up.
    fs.mkdirSync(path.join(sandbox.root, 'var/lib/testflinger-agent-host'), { recursive: true });
    fs.writeFileSync(path.join(sandbox.root, 'var/lib/testflinger-agent-host/state.json'), '{broken');
    await expect(sandbox.hook('update-status')).rejects.toThrow(/hook update-status failed \(1\)/);
    expect(sandbox.unit.state().logs.some((l) => l.level === 'ERROR' && /JSON/.test(l.message))).toBe(true);
  });

  it('outside a sandbox, a charm without its shipped node stops and says why: no apt nodejs, no node from PATH', async () => {
    const sandbox = new Sandbox({});
    // apt-get records any call; node on PATH records being asked to run the charm (the emulated
    // hook tools, standing in for Juju's, run on it too).
    const decoys = tempDir('decoys');
    const calledMarker = path.join(decoys, 'called');
    const decoy = (name: string, body: string) => fs.writeFileSync(path.join(decoys, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    decoy('apt-get', `echo apt-get >> ${calledMarker}`);
    decoy('node', `case "$1" in *charm.js) echo node >> ${calledMarker} ;; esac\nexec ${process.execPath} "$@"`);
    const result = await dispatchEvent(sandbox.unit, 'hooks/update-status', { charmDir: repoRoot, env: { PATH: `${sandbox.unit.binDir}:${decoys}:/usr/bin:/bin` } });
    expect(result.exitCode).toBe(1);
    expect(fs.existsSync(calledMarker) ? fs.readFileSync(calledMarker, 'utf8') : '').toBe('');
    expect(sandbox.unit.state().logs).toContainEqual(expect.objectContaining({ level: 'ERROR', message: expect.stringMatching(/this charm has no .*node\/bin\/node: pack it/) }));
  });
});
