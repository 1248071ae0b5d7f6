import { HookToolBackend, HookToolError, flattenActionResults, parseDispatchPath, jujuContextFromEnv } from '../../src/ops';

/** A runner that records argv and answers from a table. */
function recorder(answers: Record<string, string> = {}) {
  const calls: string[][] = [];
  const run = async (tool: string, args: readonly string[]) => {
    calls.push([tool, ...args]);
    return answers[tool] ?? '';
  };
  return { calls, backend: new HookToolBackend(run) };
}

describe('hook tools are spoken as Juju expects', () => {
  it('asks config-get and action-get for JSON', async () => {
    const { calls, backend } = recorder({ 'config-get': '{"a":1}\n', 'action-get': '{"p":{"q":"r"}}\n' });
    expect(await backend.configGet()).toEqual({ a: 1 });
    expect(await backend.actionGet()).toEqual({ p: { q: 'r' } });
    expect(calls).toEqual([['config-get', '--format=json'], ['action-get', '--format=json']]);
  });

  it('puts -- before free text so a leading dash is not a flag', async () => {
    const { calls, backend } = recorder();
    await backend.statusSet('blocked', '-x is bad');
    await backend.statusSet('active', 'ok', { application: true });
    await backend.jujuLog('WARNING', '--weird');
    await backend.actionFail('-oops');
    await backend.actionLog('-step');
    await backend.applicationVersionSet('1.0');
    expect(calls).toEqual([
      ['status-set', '--application=False', 'blocked', '--', '-x is bad'],
      ['status-set', '--application=True', 'active', '--', 'ok'],
      ['juju-log', '--log-level', 'WARNING', '--', '--weird'],
      ['action-fail', '--', '-oops'],
      ['action-log', '--', '-step'],
      ['application-version-set', '--', '1.0'],
    ]);
  });

  it('reads status-get, is-leader and secret-get JSON', async () => {
    const { calls, backend } = recorder({
      'status-get': '{"message":"m","status":"active","status-data":{}}\n',
      'is-leader': 'true\n',
      'secret-get': '{"token":"t"}\n',
    });
    expect(await backend.statusGet()).toEqual({ status: 'active', message: 'm' });
    expect(await backend.isLeader()).toBe(true);
    expect(await backend.secretGet({ id: 'secret:abc' }, { refresh: true })).toEqual({ token: 't' });
    expect(calls).toEqual([
      ['status-get', '--include-data', '--format=json', '--application=false'],
      ['is-leader', '--format=json'],
      ['secret-get', '--format=json', 'secret:abc', '--refresh'],
    ]);
  });

  it('passes action-set one key=value per result and skips an empty call', async () => {
    const { calls, backend } = recorder();
    await backend.actionSet({});
    await backend.actionSet(flattenActionResults({ a: { b: 'x=y' }, c: 2 }));
    expect(calls).toEqual([['action-set', 'a.b=x=y', 'c=2']]);
  });

  it('turns unreadable JSON into a HookToolError naming the tool', async () => {
    const { backend } = recorder({ 'config-get': 'not json' });
    await expect(backend.configGet()).rejects.toThrow(HookToolError);
  });
});

describe('the Juju context', () => {
  it('reads the event from JUJU_DISPATCH_PATH, or from the invoked name on old Juju', () => {
    const env = { JUJU_UNIT_NAME: 'app/3', JUJU_CHARM_DIR: '/charm' };
    expect(jujuContextFromEnv({ ...env, JUJU_DISPATCH_PATH: 'actions/update-configs', JUJU_ACTION_UUID: '7' }, 'x', '/f')).toMatchObject({
      dispatchPath: 'actions/update-configs',
      appName: 'app',
      charmDir: '/charm',
      actionId: '7',
    });
    expect(jujuContextFromEnv(env, '/charm/hooks/install', '/f').dispatchPath).toBe('hooks/install');
    expect(parseDispatchPath('/var/lib/juju/charm/hooks/config-changed')).toEqual({ kind: 'hook', name: 'config-changed' });
    expect(() => parseDispatchPath('dispatch')).toThrow(/neither/);
  });
});

describe('the context of a secret hook', () => {
  const env = { JUJU_UNIT_NAME: 'app/0', JUJU_DISPATCH_PATH: 'hooks/secret-changed' };
  it('names the secret, its label and its revision, as Juju sets them', () => {
    const context = jujuContextFromEnv({ ...env, JUJU_SECRET_ID: 'secret:abc', JUJU_SECRET_LABEL: 'db', JUJU_SECRET_REVISION: '4' }, 'x', '/f');
    expect(context).toMatchObject({ secretId: 'secret:abc', secretLabel: 'db', secretRevision: 4 });
    expect(Object.isFrozen(context)).toBe(true);
  });

  it('has no revision when Juju gives none (it sets one only above 0), and no secret outside secret hooks', () => {
    expect(jujuContextFromEnv({ ...env, JUJU_SECRET_ID: 'secret:abc', JUJU_SECRET_REVISION: '0' }, 'x', '/f')).toMatchObject({ secretLabel: undefined, secretRevision: undefined });
    expect(jujuContextFromEnv({ JUJU_UNIT_NAME: 'app/0', JUJU_DISPATCH_PATH: 'hooks/install' }, 'x', '/f')).toMatchObject({ secretId: undefined });
  });
});
