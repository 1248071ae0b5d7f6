/**
 * The restart and limits rules, as tables: a previous state and what this event finds in, a plan
 * out. No git, no files, no supervisord.
 */
import { agentUserName } from '../../src/charm/agentusers';
import { plan, type DesiredAgent, type Plan, type PlanInputs } from '../../src/charm/plan';
import { emptyHostState, type HostState } from '../../src/charm/state';

const roomy = { maxOpenFiles: 1_048_576, memTotalMb: 65536 };

function agent(name: string, changes: Partial<DesiredAgent> = {}): DesiredAgent {
  return { name, contentHash: `dir-${name}`, agentId: name, programHash: `prog-${name}`, ...changes };
}

/** The state after `agents` were applied, with nothing pending. */
function appliedState(agents: DesiredAgent[], changes: Partial<HostState> = {}): HostState {
  return {
    ...emptyHostState(),
    ports: Object.fromEntries(agents.map((a, i) => [a.name, 8200 + i])),
    appliedPrograms: Object.fromEntries(agents.map((a) => [a.name, a.programHash])),
    appliedAgents: Object.fromEntries(agents.map((a) => [a.name, a.contentHash])),
    agentIds: Object.fromEntries(agents.map((a) => [a.name, a.agentId])),
    appliedShared: 'shared',
    ...changes,
  };
}

const two = [agent('agent-1'), agent('agent-2')];

function inputs(changes: Partial<PlanInputs> & { busy?: string[]; limitsCurrent?: boolean; delegationCurrent?: boolean; running?: boolean } = {}): PlanInputs {
  const { busy = [], limitsCurrent = true, delegationCurrent = true, running = true, ...rest } = changes;
  const previous = rest.previous ?? appliedState(two);
  return {
    previous,
    agents: two,
    invalid: {},
    ports: { ...previous.ports, 'agent-3': 8202 },
    sharedHash: 'shared',
    supervisord: { running, limitsCurrent: () => limitsCurrent, delegationCurrent },
    users: { all: new Set(['tf-agent-1', 'tf-agent-2']), locked: new Set() },
    isBusy: (name) => busy.includes(name),
    capacity: roomy,
    restartAll: false,
    mayRestartSupervisor: false,
    ...rest,
  };
}

describe('plan: which agents restart, and how', () => {
  type Outcome = Pick<Plan, 'added' | 'removed' | 'forced' | 'keptBad' | 'toSignal' | 'update'>;
  const nothing: Outcome = { added: [], removed: [], forced: [], keptBad: [], toSignal: [], update: false };
  it.each<[string, Partial<PlanInputs>, Partial<Outcome>]>([
    ['nothing changed: nothing happens', {}, {}],
    ['a new agent: added and started by update, not signalled', { agents: [...two, agent('agent-3')] }, { added: ['agent-3'], update: true }],
    ['an agent gone: removed by update', { agents: [agent('agent-1')] }, { removed: ['agent-2'], update: true }],
    ['one directory changed: only that agent is asked to restart once idle', { agents: [agent('agent-1', { contentHash: 'new' }), agent('agent-2')] }, { toSignal: ['agent-1'] }],
    ['what every agent shares changed: all are asked', { sharedHash: 'other' }, { toSignal: ['agent-1', 'agent-2'] }],
    ['restart all (upgrade-charm): all are asked', { restartAll: true }, { toSignal: ['agent-1', 'agent-2'] }],
    ['a program file changed: forced by update (supervisord restarts it), not signalled', { agents: [agent('agent-1', { programHash: 'new', contentHash: 'new' }), agent('agent-2')] }, { forced: ['agent-1'], update: true }],
    ['a restart still pending from an earlier hook: asked again', { previous: appliedState(two, { pendingRestart: ['agent-2'] }) }, { toSignal: ['agent-2'] }],
    ['a running agent whose conf went bad: kept on its program, not signalled, not removed', { agents: [agent('agent-1')], invalid: { 'agent-2': 'bad conf' } }, { keptBad: ['agent-2'] }],
    ['a bad agent that never ran: nothing to keep', { agents: [...two], invalid: { 'agent-9': 'bad conf' } }, {}],
  ])('%s', (_case, given, expected) => {
    const { added, removed, forced, keptBad, toSignal, update } = plan(inputs(given));
    expect({ added, removed, forced, keptBad, toSignal, update }).toEqual({ ...nothing, ...expected });
  });

  it('remembers the agents it asks, until apply says the signal was delivered', () => {
    const decided = plan(inputs({ sharedHash: 'other' }));
    expect(decided.next.pendingRestart).toEqual(['agent-1', 'agent-2']);
    expect(decided.next.appliedShared).toBe('other');
  });

  it('a kept bad agent keeps its last good hashes and id', () => {
    const decided = plan(inputs({ agents: [agent('agent-1')], invalid: { 'agent-2': 'bad conf' } }));
    expect(decided.next.appliedPrograms['agent-2']).toBe('prog-agent-2');
    expect(decided.next.appliedAgents['agent-2']).toBe('dir-agent-2');
    expect(decided.next.agentIds['agent-2']).toBe('agent-2');
    expect(decided.next.invalidAgents).toEqual({ 'agent-2': 'bad conf' });
  });
});

describe('plan: supervisord and its limits', () => {
  it.each<[string, Parameters<typeof inputs>[0], { step: string; pending: boolean; waitFor: string[]; toSignal: string[] }]>([
    ['limits current: supervisord is left alone', { sharedHash: 'other' }, { step: 'keep', pending: false, waitFor: [], toSignal: ['agent-1', 'agent-2'] }],
    ['not running: started (every agent starts afresh, no signal)', { running: false, sharedHash: 'other' }, { step: 'start', pending: false, waitFor: [], toSignal: [] }],
    ['new limits, no agent busy: restarted now (which restarts every agent, so no signal)', { limitsCurrent: false, sharedHash: 'other' }, { step: 'restart', pending: false, waitFor: [], toSignal: [] }],
    ['new limits, one agent busy: written, restart pending, waiting for exactly that agent', { limitsCurrent: false, busy: ['agent-2'] }, { step: 'keep', pending: true, waitFor: ['agent-2'], toSignal: [] }],
    ['pending from before, the busy agent now idle: restarted', { previous: appliedState(two, { limitsRestartPending: true }) }, { step: 'restart', pending: false, waitFor: [], toSignal: [] }],
    ['pending from before, still busy: still pending', { previous: appliedState(two, { limitsRestartPending: true }), busy: ['agent-1'] }, { step: 'keep', pending: true, waitFor: ['agent-1'], toSignal: [] }],
    ['install may restart it even with an agent busy', { limitsCurrent: false, busy: ['agent-1'], mayRestartSupervisor: true }, { step: 'restart', pending: false, waitFor: [], toSignal: [] }],
    ['cgroup delegation new, no agent busy: restarted now', { delegationCurrent: false, sharedHash: 'other' }, { step: 'restart', pending: false, waitFor: [], toSignal: [] }],
    ['cgroup delegation new, one agent busy: restart pending, waiting for that agent', { delegationCurrent: false, busy: ['agent-1'] }, { step: 'keep', pending: true, waitFor: ['agent-1'], toSignal: [] }],
    ['cgroup delegation new at install, an agent busy: restarted', { delegationCurrent: false, busy: ['agent-1'], mayRestartSupervisor: true }, { step: 'restart', pending: false, waitFor: [], toSignal: [] }],
  ])('%s', (_case, given, expected) => {
    const decided = plan(inputs(given));
    expect({ step: decided.supervisord.kind, pending: decided.next.limitsRestartPending, waitFor: decided.limitsWaitFor, toSignal: decided.toSignal }).toEqual(expected);
  });

  it('writes limits and delegation that are out of date even while their restart waits', () => {
    expect(plan(inputs({ limitsCurrent: false, busy: ['agent-1'] })).supervisord).toEqual({ kind: 'keep', writeLimits: true, writeDelegation: false });
    expect(plan(inputs({ delegationCurrent: false, busy: ['agent-1'] })).supervisord).toEqual({ kind: 'keep', writeLimits: false, writeDelegation: true });
    expect(plan(inputs({ previous: appliedState(two, { limitsRestartPending: true }), busy: ['agent-1'] })).supervisord).toEqual({ kind: 'keep', writeLimits: false, writeDelegation: false });
  });

  it('asks whether agents are busy only when a restart is due', () => {
    const asked: string[] = [];
    plan({ ...inputs(), isBusy: (name) => (asked.push(name), false) });
    expect(asked).toEqual([]);
  });

  it('names a host too small for its agents', () => {
    expect(plan(inputs({ capacity: { maxOpenFiles: 512, memTotalMb: 65536 } })).next.capacityProblem).toBe('host too small: 2 agents need 1024 open files but the hard limit is 512');
    expect(plan(inputs()).next.capacityProblem).toBeNull();
  });
});

describe('plan: one user per agent', () => {
  const three = [...two, agent('agent-3')];
  it.each<[string, Parameters<typeof inputs>[0], Plan['users']]>([
    ['every agent has its user: none made, none locked', {}, { add: [], lock: [], unlock: [] }],
    ['a new agent: its user is made', { agents: three }, { add: ['agent-3'], lock: [], unlock: [] }],
    ['a user deleted by hand: made again', { users: { all: new Set(['tf-agent-2']), locked: new Set() } }, { add: ['agent-1'], lock: [], unlock: [] }],
    ['an agent gone: its user is locked, not deleted', { agents: [agent('agent-1')] }, { add: [], lock: ['agent-2'], unlock: [] }],
    ['an agent gone whose user is gone too: nothing to lock', { agents: [agent('agent-1')], users: { all: new Set(['tf-agent-1']), locked: new Set() } }, { add: [], lock: [], unlock: [] }],
    ['an agent gone whose user is locked already: locked once', { agents: [agent('agent-1')], users: { all: new Set(['tf-agent-1', 'tf-agent-2']), locked: new Set(['tf-agent-2']) } }, { add: [], lock: [], unlock: [] }],
    ['an agent back whose user was locked: unlocked, not made', { users: { all: new Set(['tf-agent-1', 'tf-agent-2']), locked: new Set(['tf-agent-2']) } }, { add: [], lock: [], unlock: ['agent-2'] }],
    ['a kept bad agent keeps its user', { agents: [agent('agent-1')], invalid: { 'agent-2': 'bad conf' } }, { add: [], lock: [], unlock: [] }],
    ['a sandbox (no users of its own): nothing', { agents: three, users: null }, { add: [], lock: [], unlock: [] }],
  ])('%s', (_case, given, expected) => {
    expect(plan(inputs(given)).users).toEqual(expected);
  });

  it('a long agent name gets a user of at most 32 characters that no other name shares', () => {
    const long = `agent-${'x'.repeat(40)}`;
    const users = plan(inputs({ agents: [agent(long), agent(`${long}y`)], users: { all: new Set(), locked: new Set() } })).users.add.map(agentUserName);
    expect(users.every((u) => u.length <= 32 && /^tf-agent-x{14}-[0-9a-f]{8}$/.test(u))).toBe(true);
    expect(new Set(users).size).toBe(2);
    expect(agentUserName('agent-1')).toBe('tf-agent-1');
    expect(agentUserName('a'.repeat(29))).toBe(`tf-${'a'.repeat(29)}`);
  });
});
