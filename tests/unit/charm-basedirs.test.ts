/**
 * The rules for basedirs a conf names on a unit (src/charm/basedirs.ts, docs/isolation.md):
 * upstream's shared defaults written out are the defaults; others must be well-formed, in a
 * place where a directory an agent owns endangers nobody, and no agent's may be another's.
 */
import { UPSTREAM_BASEDIRS, parseAgentConfig, stateDirNote } from '../../src/agent/config';
import { agentBasedirs, agentUids, basedirConflicts, basedirProblems, basedirRuleProblem, tmpfilesLines, type AgentBasedirs } from '../../src/charm/basedirs';
import { hostPaths } from '../../src/charm/paths';

const paths = hostPaths('/');
const stateOf = (agent: string) => paths.agentStateDir(agent);

function conf(agent: string, basedirs: Record<string, string>): string {
  return JSON.stringify({ agent_id: agent, job_queues: ['q'], ...basedirs });
}

/** The basedirs the charm finds in a conf (parsed as discovery parses it: no state dir). */
function found(agent: string, basedirs: Record<string, string> = {}): AgentBasedirs {
  return agentBasedirs(agent, parseAgentConfig(conf(agent, basedirs), 'x.conf'), stateOf(agent));
}

const run = (dir: string): AgentBasedirs => ({ agent: 'agent-a', basedirs: [{ key: 'execution_basedir', dir }] });

describe("upstream's shared defaults mean the agent's own state dir", () => {
  it.each([
    ['no basedirs', {}],
    ["upstream's defaults written out", { ...UPSTREAM_BASEDIRS }],
  ])('%s: the charm and the agent both put all three in its state dir', (_case, basedirs) => {
    expect(found('agent-a', basedirs).basedirs).toEqual([
      { key: 'execution_basedir', dir: '/srv/testflinger/agent-a/run' },
      { key: 'logging_basedir', dir: '/srv/testflinger/agent-a/logs' },
      { key: 'results_basedir', dir: '/srv/testflinger/agent-a/results' },
    ]);
    const parsed = parseAgentConfig(conf('agent-a', basedirs), 'x.conf', stateOf('agent-a'));
    expect([parsed.execution_basedir, parsed.logging_basedir, parsed.results_basedir]).toEqual(['/srv/testflinger/agent-a/run', '/srv/testflinger/agent-a/logs', '/srv/testflinger/agent-a/results']);
    expect(stateDirNote(parsed, stateOf('agent-a'))).toBe(
      "basedirs: upstream's shared defaults are this agent's own here (one user per agent): execution_basedir /tmp/testflinger/run -> /srv/testflinger/agent-a/run, logging_basedir /tmp/testflinger/logs -> /srv/testflinger/agent-a/logs, results_basedir /tmp/testflinger/results -> /srv/testflinger/agent-a/results",
    );
  });

  it("only the key's own default is the default; others are the conf's own", () => {
    expect(found('agent-a', { execution_basedir: '/tmp/testflinger/logs', logging_basedir: '/tmp/tfa/agent-a/logs' }).basedirs).toEqual([
      { key: 'execution_basedir', dir: '/tmp/testflinger/logs' },
      { key: 'logging_basedir', dir: '/tmp/tfa/agent-a/logs' },
      { key: 'results_basedir', dir: '/srv/testflinger/agent-a/results' },
    ]);
  });

  it('without a state dir (a sandbox) the conf is read as upstream reads it, and nothing is logged', () => {
    const parsed = parseAgentConfig(conf('agent-a', {}), 'x.conf');
    expect(parsed.execution_basedir).toBe('/tmp/testflinger/run');
    expect(stateDirNote(parsed, undefined)).toBeUndefined();
  });
});

describe('where a basedir may be', () => {
  it.each([
    '/tmp/tfa/agent-a/run',
    '/tmp/agent-a-run',
    '/var/tmp/tf/agent-a',
    '/srv/lab/agent-a/run',
    '/srv/testflinger/agent-a/scratch',
    '/home/ubuntu/testflinger/agent-a/run',
    '/home/nobody-here/tf/run',
  ])('%s is allowed', (dir) => {
    expect(basedirRuleProblem(run(dir), paths)).toBeUndefined();
  });

  it.each([
    ['relative/run', 'must be an absolute path'],
    ['/tmp//run', 'has an empty component'],
    ['/tmp/run/', 'has an empty component'],
    ['/tmp/../etc/run', 'no component may start with "."'],
    ['/tmp/./run', 'no component may start with "."'],
    ['/home/ubuntu/.config/systemd/user', 'no component may start with "."'],
    ['/tmp/a b', 'components must be letters, digits'],
    ['/tmp/-rf', 'components must be letters, digits'],
    [`/tmp/${'a'.repeat(65)}`, 'components must be letters, digits'],
    [`/tmp/${'abcd/'.repeat(50)}x`, 'longer than 200 characters'],
    ['/etc/systemd/system', 'must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>'],
    ['/var/lib/agent-a', 'must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>'],
    ['/tmp', 'must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>'],
    ['/srv', 'must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>'],
    ['/root/run', 'must be under /tmp, /var/tmp, /srv or /home/<user>/<dir>'],
    ['/home/ubuntu', 'at least two directories below a home'],
    ['/home/ubuntu/bin', 'at least two directories below a home'],
    ['/srv/agent-configs/lab1/run', "/srv/agent-configs is the charm's own"],
    ['/srv/agent-configs-old/run', "/srv/agent-configs is the charm's own"],
    ['/srv/testflinger-agent/bin', "/srv/testflinger-agent is the charm's own"],
    ['/srv/testflinger', "only the agent's own /srv/testflinger/agent-a"],
    ['/srv/testflinger/agent-b/run', "only the agent's own /srv/testflinger/agent-a"],
    ['/tmp/TESTFLINGER-DEVICE-OFFLINE-agent-b', "the agents' offline markers"],
  ])('%s is refused: %s', (dir, why) => {
    const problem = basedirRuleProblem(run(dir), paths);
    expect(problem).toContain(why);
    expect(problem).toMatch(/^execution_basedir /);
  });

  it('a path with odd characters is shown quoted and escaped, never as it is', () => {
    expect(basedirRuleProblem(run('/tmp/x\nFAKE LOG LINE'), paths)).toBe('execution_basedir "/tmp/x\\nFAKE LOG LINE": components must be letters, digits, . _ + - (at most 64), not starting with . + or -');
  });
});

describe('no two agents share a basedir', () => {
  it('two confs naming one directory: both refused, each naming the other; the others are untouched', () => {
    const problems = basedirProblems(
      [
        found('agent-a', { execution_basedir: '/tmp/shared/run' }),
        found('agent-b', { results_basedir: '/tmp/shared/run' }),
        found('agent-c', { execution_basedir: '/tmp/tfa/agent-c/run' }),
        found('agent-d'),
      ],
      paths,
    );
    expect(Object.fromEntries(problems)).toEqual({
      'agent-a': "execution_basedir /tmp/shared/run: is also agent-b's results_basedir",
      'agent-b': "results_basedir /tmp/shared/run: is also agent-a's execution_basedir",
    });
  });

  it("one inside another agent's: both refused", () => {
    const problems = basedirConflicts([found('agent-a', { logging_basedir: '/tmp/tfa' }), found('agent-b', { logging_basedir: '/tmp/tfa/agent-b/logs' })]);
    expect(Object.fromEntries(problems)).toEqual({
      'agent-a': "logging_basedir /tmp/tfa: holds agent-b's logging_basedir",
      'agent-b': "logging_basedir /tmp/tfa/agent-b/logs: is inside agent-a's logging_basedir",
    });
  });

  it("one agent's own basedirs may share a directory or nest; siblings under a shared parent are fine", () => {
    const agents = [
      found('agent-a', { execution_basedir: '/tmp/tfa/agent-a', logging_basedir: '/tmp/tfa/agent-a/logs', results_basedir: '/tmp/tfa/agent-a/logs' }),
      found('agent-b', { execution_basedir: '/tmp/tfa/agent-b/run', logging_basedir: '/tmp/tfa/agent-b/logs' }),
    ];
    expect(basedirProblems(agents, paths).size).toBe(0);
  });

  it('a refused rule is reported before any conflict, and that agent is left out of the comparison', () => {
    const problems = basedirProblems([found('agent-a', { execution_basedir: '/etc/x' }), found('agent-b', { execution_basedir: '/etc/x' })], paths);
    expect(problems.get('agent-a')).toMatch(/^execution_basedir \/etc\/x: must be under/);
    expect(problems.get('agent-b')).toMatch(/^execution_basedir \/etc\/x: must be under/);
  });
});

it("the agents' uids are the members of their group, as passwd numbers them", () => {
  const group = 'root:x:0:\ntestflinger-agents:x:990:tf-a,tf-b,tf-gone\nother:x:5:tf-c\n';
  const uids = { 'tf-a': 991, 'tf-b': 992, 'tf-c': 993 } as Record<string, number>;
  expect([...agentUids(group, 'testflinger-agents', (u) => uids[u])]).toEqual([991, 992]);
});

it("the basedirs in /tmp and /var/tmp are made again at boot: root's on the way, the agent's as (and below) a leaf; others are left alone", () => {
  const agents = [
    found('agent-a', { execution_basedir: '/tmp/tfa/agent-a/run', logging_basedir: '/tmp/tfa/agent-a/run/sub/logs', results_basedir: '/var/tmp/agent-a' }),
    found('agent-b', { execution_basedir: '/tmp/tfa/agent-b/run', logging_basedir: '/home/ubuntu/tf/agent-b/logs' }),
    found('agent-c'),
  ];
  expect(tmpfilesLines(agents, (agent) => `tf-${agent}`).split('\n')).toEqual([
    'd /tmp/tfa 0755 root root -',
    'd /tmp/tfa/agent-a 0755 root root -',
    'd /tmp/tfa/agent-a/run 0700 tf-agent-a tf-agent-a -',
    'd /tmp/tfa/agent-a/run/sub 0700 tf-agent-a tf-agent-a -',
    'd /tmp/tfa/agent-a/run/sub/logs 0700 tf-agent-a tf-agent-a -',
    'd /tmp/tfa/agent-b 0755 root root -',
    'd /tmp/tfa/agent-b/run 0700 tf-agent-b tf-agent-b -',
    'd /var/tmp/agent-a 0700 tf-agent-a tf-agent-a -',
  ]);
});
