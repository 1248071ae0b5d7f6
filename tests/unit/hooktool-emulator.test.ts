import * as fs from 'node:fs';
import * as path from 'node:path';
import { createEmulatedUnit, dispatchEvent } from '../../src/hooktools/emulator';
import { emptyState } from '../../src/hooktools/state';
import { runTool } from '../../src/hooktools/tools';
import { tempDir } from '../helpers/tmp';

function inAction(params: Record<string, unknown> = {}) {
  return { ...emptyState(), action: { name: 'a', params } };
}

describe('the emulated hook tools refuse what Juju refuses', () => {
  it('action-set: bad keys, reserved keys, missing =, and outside an action', () => {
    const s = inAction();
    expect(runTool('action-set', ['Bad=1'], s)).toMatchObject({ exitCode: 2, stderr: expect.stringMatching(/key "Bad" must start and end/) });
    expect(runTool('action-set', ['a.stdout=1'], s)).toMatchObject({ exitCode: 2, stderr: 'ERROR cannot set reserved action key "stdout"\n' });
    expect(runTool('action-set', ['novalue'], s).exitCode).toBe(2);
    expect(runTool('action-set', ['a.b=1', 'a.c=2'], s).exitCode).toBe(0);
    expect(s.actionResults).toEqual({ a: { b: '1', c: '2' } });
    expect(runTool('action-set', ['x=1'], emptyState())).toMatchObject({ exitCode: 1, stderr: 'ERROR not running an action\n' });
  });

  it('status-set: only the four settable statuses, one message, leader for --application', () => {
    const s = { ...emptyState(), leader: false };
    expect(runTool('status-set', ['error', 'x'], s).exitCode).toBe(2);
    expect(runTool('status-set', ['active', 'a', 'b'], s).exitCode).toBe(2);
    expect(runTool('status-set', ['--application=True', 'active'], s)).toMatchObject({ exitCode: 1 });
    expect(runTool('status-set', ['--application=False', 'blocked', '--', '-x'], s).exitCode).toBe(0);
    expect(s.unitStatus).toEqual({ status: 'blocked', message: '-x' });
    expect(runTool('status-set', ['blocked', '-x'], s)).toMatchObject({ exitCode: 2, stderr: expect.stringMatching(/flag provided but not defined: -x/) });
  });

  it('config-get: JSON of set values, null for unknown keys, no key with --all', () => {
    const s = { ...emptyState(), config: { a: 'x', b: null } };
    expect(runTool('config-get', ['--format=json'], s).stdout).toBe('{"a":"x"}\n');
    expect(runTool('config-get', ['--format=json', '--all'], s).stdout).toBe('{"a":"x","b":null}\n');
    expect(runTool('config-get', ['nope', '--format=json'], s).stdout).toBe('null\n');
    expect(runTool('config-get', ['a', '--all'], s).exitCode).toBe(2);
    expect(runTool('config-get', ['--format=toml'], s).exitCode).toBe(2);
  });

  it('juju-log needs a message; an unknown level still logs at INFO', () => {
    const s = emptyState();
    expect(runTool('juju-log', [], s).exitCode).toBe(2);
    expect(runTool('juju-log', ['-l', 'LOUD', '--', 'hi', 'there'], s).exitCode).toBe(0);
    expect(s.logs).toEqual([{ level: 'INFO', message: 'hi there' }]);
  });

  it('state-get, state-set and state-delete: the whole map or one key, --strict for a missing one, --file under the arguments', () => {
    const state = { ...emptyState(), charmState: { a: '1' } };
    const stdin = { readInput: (p: string) => (p === '-' ? 'b: two\nc: 3\n' : '') };
    expect(runTool('state-set', ['--file', '-', 'c=three'], state, stdin)).toMatchObject({ exitCode: 0 });
    expect(runTool('state-get', ['--format=json'], state).stdout).toBe('{"a":"1","b":"two","c":"three"}\n');
    expect(runTool('state-get', ['b'], state).stdout).toBe('two\n');
    expect(runTool('state-get', ['nope'], state)).toMatchObject({ exitCode: 0, stdout: '' });
    expect(runTool('state-get', ['--strict', 'nope'], state)).toMatchObject({ exitCode: 1, stderr: 'ERROR "nope" not found\n' });
    expect(runTool('state-set', ['a=1', 'a=2'], state)).toMatchObject({ exitCode: 2 });
    expect(runTool('state-set', ['novalue'], state)).toMatchObject({ exitCode: 2 });
    runTool('state-delete', ['a'], state);
    expect(state.charmState).toEqual({ b: 'two', c: 'three' });
  });

  it('answers an unknown tool as the unit agent does', () => {
    expect(runTool('relation-frob', [], emptyState())).toMatchObject({ exitCode: 1 });
  });
});

describe('the emulated unit runs dispatch with the environment Juju gives', () => {
  /** A charm whose dispatch prints its environment; metadata.yaml names it when `name` is given. */
  function probeCharm(name?: string) {
    const dir = tempDir('probe-charm');
    fs.writeFileSync(path.join(dir, 'dispatch'), '#!/bin/sh\nexec env\n', { mode: 0o755 });
    if (name) fs.writeFileSync(path.join(dir, 'metadata.yaml'), `name: ${name}\n`);
    return { charmDir: dir, unit: createEmulatedUnit(path.join(dir, '.unit'), '/nonexistent/hooktool.js', dir) };
  }
  const envOf = (stdout: string) => Object.fromEntries(stdout.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

  it('names the secret of a secret hook (its revision only above 0), as unit 0 of the charm metadata.yaml names', async () => {
    const { charmDir, unit } = probeCharm('probe');
    const env = envOf((await dispatchEvent(unit, 'hooks/secret-changed', { charmDir, secret: { id: 'secret:abc', label: 'db', revision: 0 } })).stdout);
    expect(env).toMatchObject({ JUJU_UNIT_NAME: 'probe/0', JUJU_SECRET_ID: 'secret:abc', JUJU_SECRET_LABEL: 'db' });
    expect(env['JUJU_SECRET_REVISION']).toBeUndefined();
    const revised = envOf((await dispatchEvent(unit, 'hooks/secret-changed', { charmDir, unitName: 'other/2', secret: { id: 'secret:abc', revision: 3 } })).stdout);
    expect(revised).toMatchObject({ JUJU_UNIT_NAME: 'other/2', JUJU_SECRET_REVISION: '3' });
    expect(revised['JUJU_SECRET_LABEL']).toBeUndefined();
  });

  it('refuses to guess the unit when the charm names none', async () => {
    const { charmDir, unit } = probeCharm();
    await expect(dispatchEvent(unit, 'hooks/install', { charmDir })).rejects.toThrow(/no unit name given, and no metadata.yaml with a name/);
  });
});
