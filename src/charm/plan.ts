/**
 * Deciding, apart from doing: from what the host should run (the desired agents), what it ran
 * last (the previous state) and what supervisord says, `plan` decides which agents are added,
 * removed, restarted at once or asked to restart once idle, what happens to supervisord's limits,
 * and the state once that is done. It reads no file, runs nothing and needs no git: the restart
 * and limits rules are tested as tables (tests/unit/charm-plan.test.ts). reconcile.ts gathers
 * the inputs and applies the plan. See docs/architecture.md.
 */
import { agentUserName, type HostUsers } from './agentusers';
import type { AgentUserChange } from './driver';
import { capacityProblem, type HostCapacity } from './limits';
import type { HostState } from './state';

/** One valid agent as this event would run it. */
export interface DesiredAgent {
  readonly name: string;
  /** Hash of the agent's directory in the config repo. */
  readonly contentHash: string;
  readonly agentId: string;
  /** Hash of its program file as rendered now. */
  readonly programHash: string;
}

export interface PlanInputs {
  readonly previous: HostState;
  readonly agents: readonly DesiredAgent[];
  /** Agent directories that cannot run: name → reason. */
  readonly invalid: Readonly<Record<string, string>>;
  /** Metrics port per agent (kept for each agent's lifetime). */
  readonly ports: Readonly<Record<string, number>>;
  /** Hash of what every agent shares (runtime, phase scripts, SSH options, server). */
  readonly sharedHash: string;
  readonly supervisord: {
    readonly running: boolean;
    /** Whether the limits on disk are those for this many agents. */
    readonly limitsCurrent: (agentCount: number) => boolean;
    /** Whether systemd delegates supervisord's cgroup as agents need (docs/isolation.md). */
    readonly delegationCurrent: boolean;
  };
  /** The users on the host; null where agents get no users of their own (a sandbox). */
  readonly users: HostUsers | null;
  /** Whether the named agent is running a job now; asked only when a supervisord restart waits. */
  readonly isBusy: (name: string) => boolean;
  readonly capacity: HostCapacity;
  /** Ask every agent to restart once idle (upgrade-charm, update-testflinger). */
  readonly restartAll: boolean;
  /** supervisord may restart even if agents are busy (install: nothing runs yet). */
  readonly mayRestartSupervisor: boolean;
}

/** What happens to supervisord itself. */
export type SupervisordStep =
  /** It is not running: write its limits and start it (it reads every program file). */
  | { readonly kind: 'start' }
  /** New limits apply now: every agent stops and starts again with supervisord. */
  | { readonly kind: 'restart' }
  /**
   * It keeps running; `writeLimits` when its limits file is out of date, `writeDelegation` when
   * its cgroup delegation is (both apply at a later restart, when no agent runs a job).
   */
  | { readonly kind: 'keep'; readonly writeLimits: boolean; readonly writeDelegation: boolean };

export interface Plan {
  /** The agents with a program file after this event (valid ones and kept bad ones), sorted. */
  readonly agents: readonly string[];
  readonly added: readonly string[];
  readonly removed: readonly string[];
  /** Program file changed: supervisord restarts these at once when it rereads its files. */
  readonly forced: readonly string[];
  /** Directory changed in the repo. */
  readonly contentChanged: readonly string[];
  /** Running agents whose conf went bad: they keep their last good program file. */
  readonly keptBad: readonly string[];
  /** Asked (USR1) to restart once idle. */
  readonly toSignal: readonly string[];
  /** supervisord must reread its program files (supervisorctl's `update`). */
  readonly update: boolean;
  readonly supervisord: SupervisordStep;
  /** The agents a pending supervisord restart waits for (they are running a job). */
  readonly limitsWaitFor: readonly string[];
  /**
   * By agent name: users to make (before their program file names them), removed agents' users
   * to lock, and users of agents that came back to unlock.
   */
  readonly users: AgentUserChange;
  /** The state once applied; `pendingRestart` holds `toSignal` until the signal is delivered. */
  readonly next: HostState;
}

const sortedNames = (names: Iterable<string>) => [...names].sort();

/**
 * New limits and a new cgroup delegation take a supervisord restart, which restarts every agent:
 * it happens when no agent runs a job (or at install), else it waits, remembered in the state.
 */
function supervisordStep(inputs: PlanInputs, agents: readonly string[]): { step: SupervisordStep; pending: boolean; waitFor: string[] } {
  const { running, delegationCurrent } = inputs.supervisord;
  const limitsCurrent = inputs.supervisord.limitsCurrent(agents.length);
  if (!running) return { step: { kind: 'start' }, pending: false, waitFor: [] };
  const due = inputs.previous.limitsRestartPending || !limitsCurrent || !delegationCurrent;
  if (!due) return { step: { kind: 'keep', writeLimits: false, writeDelegation: false }, pending: false, waitFor: [] };
  const waitFor = inputs.mayRestartSupervisor ? [] : agents.filter((name) => inputs.isBusy(name));
  if (waitFor.length === 0) return { step: { kind: 'restart' }, pending: false, waitFor };
  return { step: { kind: 'keep', writeLimits: !limitsCurrent, writeDelegation: !delegationCurrent }, pending: true, waitFor };
}

/** Users for agents that have none; removed agents' users locked, never deleted (their files keep an owner). */
function userChanges(inputs: PlanInputs, agents: readonly string[], removed: readonly string[]): AgentUserChange {
  const users = inputs.users;
  if (users === null) return { add: [], lock: [], unlock: [] };
  const exists = (name: string) => users.all.has(agentUserName(name));
  const locked = (name: string) => users.locked.has(agentUserName(name));
  return {
    add: agents.filter((name) => !exists(name)),
    lock: removed.filter((name) => exists(name) && !locked(name)),
    unlock: agents.filter((name) => exists(name) && locked(name)),
  };
}

export function plan(inputs: PlanInputs): Plan {
  const { previous } = inputs;
  const applied = previous.appliedPrograms;
  const keptBad = sortedNames(Object.keys(inputs.invalid).filter((name) => applied[name] !== undefined));
  const agents = sortedNames([...inputs.agents.map((a) => a.name), ...keptBad]);
  const programHashes: Record<string, string> = {};
  for (const agent of inputs.agents) programHashes[agent.name] = agent.programHash;
  for (const name of keptBad) programHashes[name] = applied[name] as string;

  const added = agents.filter((name) => applied[name] === undefined);
  const removed = sortedNames(Object.keys(applied).filter((name) => programHashes[name] === undefined));
  const forced = agents.filter((name) => applied[name] !== undefined && applied[name] !== programHashes[name]);
  const contentChanged = inputs.agents.filter((a) => previous.appliedAgents[a.name] !== undefined && previous.appliedAgents[a.name] !== a.contentHash).map((a) => a.name);
  const sharedChanged = inputs.sharedHash !== previous.appliedShared;

  const { step, pending, waitFor } = supervisordStep(inputs, agents);
  // A supervisord that starts or restarts starts every agent afresh: no signal is needed.
  const freshStart = step.kind !== 'keep';
  const untouchedBySupervisord = agents.filter((name) => !added.includes(name) && !forced.includes(name) && !keptBad.includes(name));
  const toSignal = freshStart
    ? []
    : untouchedBySupervisord.filter((name) => inputs.restartAll || sharedChanged || contentChanged.includes(name) || previous.pendingRestart.includes(name));

  const appliedAgents: Record<string, string> = {};
  const agentIds: Record<string, string> = {};
  for (const agent of inputs.agents) {
    appliedAgents[agent.name] = agent.contentHash;
    agentIds[agent.name] = agent.agentId;
  }
  // A kept bad agent runs what it ran: its last good hash and id stay.
  for (const name of keptBad) {
    const hash = previous.appliedAgents[name];
    const id = previous.agentIds[name];
    if (hash !== undefined) appliedAgents[name] = hash;
    if (id !== undefined) agentIds[name] = id;
  }

  return {
    agents,
    added,
    removed,
    forced,
    contentChanged,
    keptBad,
    toSignal,
    update: step.kind === 'keep' && added.length + removed.length + forced.length > 0,
    supervisord: step,
    limitsWaitFor: waitFor,
    users: userChanges(inputs, agents, removed),
    next: {
      ...previous,
      ports: Object.fromEntries(agents.map((name) => [name, inputs.ports[name] as number])),
      appliedPrograms: programHashes,
      appliedAgents,
      agentIds,
      appliedShared: inputs.sharedHash,
      pendingRestart: toSignal.slice(),
      invalidAgents: { ...inputs.invalid },
      limitsRestartPending: pending,
      capacityProblem: capacityProblem(agents.length, inputs.capacity) ?? null,
    },
  };
}
