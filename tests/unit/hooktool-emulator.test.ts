import { emptyState } from '../../src/hooktools/state';
import { runTool } from '../../src/hooktools/tools';

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

  it('answers an unknown tool as the unit agent does', () => {
    expect(runTool('relation-frob', [], emptyState())).toMatchObject({ exitCode: 1 });
  });
});
