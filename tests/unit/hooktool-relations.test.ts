import { emptyState, type EmulatedRelation, type EmulatorState } from '../../src/hooktools/state';
import { runTool } from '../../src/hooktools/tools';

function cosAgent(overrides: Partial<EmulatedRelation> = {}): EmulatedRelation {
  return {
    id: 7,
    endpoint: 'cos-agent',
    remoteApp: 'grafana-agent',
    localUnitData: { mine: 'u' },
    localAppData: { ours: 'a' },
    remoteAppData: { theirs: 'ra' },
    remoteUnitsData: { 'grafana-agent/0': { ingress: 'x' }, 'grafana-agent/1': {} },
    ...overrides,
  };
}

function unit(overrides: Partial<EmulatorState> = {}): EmulatorState {
  return { ...emptyState(), unitName: 'host/0', leader: true, relations: [cosAgent()], ...overrides };
}

const inHook = (overrides: Partial<EmulatorState> = {}) =>
  unit({ hookRelation: { id: 7, remoteApp: 'grafana-agent', remoteUnit: 'grafana-agent/0' }, ...overrides });

const stdin = (text: string) => ({ readInput: (p: string) => (p === '-' ? text : '') });

describe('relation-ids', () => {
  it('lists endpoint:id in Go string order, defaulting to the hook relation', () => {
    const s = unit({ relations: [cosAgent({ id: 10 }), cosAgent({ id: 2 }), cosAgent({ id: 3, endpoint: 'other' })] });
    expect(runTool('relation-ids', ['cos-agent', '--format=json'], s).stdout).toBe('["cos-agent:10","cos-agent:2"]\n');
    expect(runTool('relation-ids', ['nothing', '--format=json'], s).stdout).toBe('[]\n');
    expect(runTool('relation-ids', ['--format=json'], inHook()).stdout).toBe('["cos-agent:7"]\n');
    expect(runTool('relation-ids', [], unit())).toMatchObject({ exitCode: 2, stderr: 'ERROR no relation name specified\n' });
  });
});

describe('relation-list', () => {
  it('lists the remote units, or the remote app with --app', () => {
    expect(runTool('relation-list', ['-r', '7', '--format=json'], unit()).stdout).toBe('["grafana-agent/0","grafana-agent/1"]\n');
    expect(runTool('relation-list', ['-r', 'cos-agent:7', '--app', '--format=json'], unit()).stdout).toBe('"grafana-agent"\n');
  });

  it('needs -r outside a relation hook, and refuses an id that is not a relation', () => {
    expect(runTool('relation-list', ['--format=json'], unit())).toMatchObject({ exitCode: 2, stderr: 'ERROR no relation id specified\n' });
    expect(runTool('relation-list', ['-r', 'x'], unit())).toMatchObject({ exitCode: 2, stderr: expect.stringMatching(/invalid relation id/) });
    expect(runTool('relation-list', ['-r', '99'], unit())).toMatchObject({ exitCode: 2, stderr: expect.stringMatching(/unknown relation id/) });
    expect(runTool('relation-list', ['--format=json'], inHook()).exitCode).toBe(0);
  });
});

describe('relation-get', () => {
  it('reads every key with "-", or one key, of a named unit or app', () => {
    const s = unit();
    expect(runTool('relation-get', ['-r', '7', '--format=json', '-', 'grafana-agent/0'], s).stdout).toBe('{"ingress":"x"}\n');
    expect(runTool('relation-get', ['-r', '7', '--format=json', 'ingress', 'grafana-agent/0'], s).stdout).toBe('"x"\n');
    expect(runTool('relation-get', ['-r', '7', '--format=json', 'nope', 'grafana-agent/0'], s).stdout).toBe('null\n');
    expect(runTool('relation-get', ['-r', '7', '--app', '--format=json', '-', 'grafana-agent'], s).stdout).toBe('{"theirs":"ra"}\n');
    expect(runTool('relation-get', ['-r', '7', '--app', '--format=json', '-', 'grafana-agent/1'], s).stdout).toBe('{"theirs":"ra"}\n');
    expect(runTool('relation-get', ['-r', '7', '--format=json', '-', 'host/0'], s).stdout).toBe('{"mine":"u"}\n');
  });

  it('defaults to the hook remote unit, or the remote app with --app', () => {
    expect(runTool('relation-get', ['--format=json'], inHook()).stdout).toBe('{"ingress":"x"}\n');
    expect(runTool('relation-get', ['--app', '--format=json'], inHook()).stdout).toBe('{"theirs":"ra"}\n');
    expect(runTool('relation-get', ['-r', '7', '--format=json', '-'], unit())).toMatchObject({ exitCode: 2, stderr: 'ERROR no unit or application specified\n' });
  });

  it('reads its own app bag in a peer relation as a non-leader (the bag every unit shares)', () => {
    const peer = cosAgent({ endpoint: 'replicas', remoteApp: 'host', remoteUnitsData: { 'host/1': {} } });
    expect(runTool('relation-get', ['-r', '7', '--app', '--format=json', '-', 'host'], unit({ leader: false, relations: [peer] }))).toMatchObject({ exitCode: 0, stdout: '{"ours":"a"}\n' });
    expect(runTool('relation-set', ['-r', '7', '--app', 'k=v'], unit({ leader: false, relations: [peer] }))).toMatchObject({ exitCode: 1, stderr: 'ERROR cannot write relation settings\n' });
  });

  it('refuses a unit not in the relation, and its own app bag to a non-leader', () => {
    expect(runTool('relation-get', ['-r', '7', '-', 'grafana-agent/5'], unit())).toMatchObject({ exitCode: 1, stderr: expect.stringMatching(/unit "grafana-agent\/5" in relation "cos-agent:7": permission denied/) });
    expect(runTool('relation-get', ['-r', '7', '--app', '-', 'host'], unit({ leader: false }))).toMatchObject({ exitCode: 1, stderr: 'ERROR permission denied\n' });
    expect(runTool('relation-get', ['-r', '7', '--app', '--format=json', '-', 'host'], unit()).stdout).toBe('{"ours":"a"}\n');
  });
});

describe('relation-set', () => {
  it('merges a YAML or JSON map from stdin, with key=value arguments winning, and "" removing a key', () => {
    const s = unit();
    expect(runTool('relation-set', ['-r', '7', '--file', '-', 'b=arg'], s, stdin('{"a": "1", "b": "file", "n": 2}')).exitCode).toBe(0);
    expect(runTool('relation-set', ['-r', '7', '--file', '-'], s, stdin('mine: ""\nc: |\n  two\n  lines\n')).exitCode).toBe(0);
    expect(s.relations[0]?.localUnitData).toEqual({ a: '1', b: 'arg', n: '2', c: 'two\nlines\n' });
  });

  it('writes the app bag only for the leader', () => {
    expect(runTool('relation-set', ['-r', '7', '--app', 'k=v'], unit({ leader: false }))).toMatchObject({ exitCode: 1, stderr: 'ERROR cannot write relation settings\n' });
    const leader = unit();
    expect(runTool('relation-set', ['-r', '7', '--app', 'k=v'], leader).exitCode).toBe(0);
    expect(leader.relations[0]?.localAppData).toEqual({ ours: 'a', k: 'v' });
  });

  it('needs -r outside a relation hook, and refuses nested values and repeated keys', () => {
    expect(runTool('relation-set', ['k=v'], unit())).toMatchObject({ exitCode: 2, stderr: 'ERROR no relation id specified\n' });
    expect(runTool('relation-set', ['k=v'], inHook()).exitCode).toBe(0);
    expect(runTool('relation-set', ['-r', '7', '--file', '-'], unit(), stdin('k: {deep: 1}')).exitCode).toBe(1);
    expect(runTool('relation-set', ['-r', '7', 'k=1', 'k=2'], unit()).exitCode).toBe(2);
  });
});
