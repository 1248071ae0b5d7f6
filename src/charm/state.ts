/** What the charm remembers between hooks, in one JSON file under the state dir: loaded once and saved once per event. */
import { readJsonFile, writeFileAtomic } from '../common/fsutil';
import type { HostPaths } from './paths';
import type { PlacementView } from './peers';

export interface HostState {
  /** Metrics port per agent, kept for the agent's lifetime. */
  ports: Record<string, number>;
  /** Program file content hash per agent, as supervisord last read it. */
  appliedPrograms: Record<string, string>;
  /** Directory content hash per agent, as last running (or asked to restart). */
  appliedAgents: Record<string, string>;
  /** agent_id per agent, as last applied (so unchanged agents need not be parsed). */
  agentIds: Record<string, string>;
  /** Hash of what all agents share: runtime, phase scripts, SSH files, server. */
  appliedShared: string;
  /**
   * Hash of everything the applied host was derived from (config, repo revision, runtime,
   * templates, driver): equal next time means nothing needs parsing or rendering.
   */
  appliedInputs: string;
  /** Agents asked to restart that could not be signalled yet. */
  pendingRestart: string[];
  /** The last failure that left the host on its previous state, shown until it is fixed. */
  problem: string | null;
  /** Agent directories skipped because their conf is bad: name → reason. */
  invalidAgents: Record<string, string>;
  runtimeVersion: string | null;
  configRevision: string | null;
  /** New supervisord limits (or cgroup delegation) wait for a moment when no agent runs a job. */
  limitsRestartPending: boolean;
  /** Why the test sandbox cannot run here, as last checked (test-sandbox on); null when it can. */
  sandboxProblem: string | null;
  /** Set when the host cannot give this many agents what they need. */
  capacityProblem: string | null;
  /** Why the agents' refresh token could not be obtained, if it could not. */
  authProblem: string | null;
  /** The secret and server the token file came from. */
  tokenSource: string | null;
  /** What the cos-agent data last published was derived from (cosprovider.ts). */
  cosPublished: string;
  /** The last restart asked of each agent by an operator or the health loop: when, how, by what. */
  restartRequests: Record<string, string>;
  /** Agents the health loop is restarting: tries so far and when the next may happen. */
  health: Record<string, AgentHealth>;
  /** Agents found RUNNING without a successful poll for a while: name → seconds since it polled. */
  staleAgents: Record<string, number>;
  /** Which agents run on this unit among the application's units, as last worked out (peers.ts). */
  placement: PlacementView | null;
}

/** The health loop's backoff for one agent that keeps ending FATAL or EXITED (src/charm/operations/health.ts). */
export interface AgentHealth {
  /** Restarts the loop made since the agent last stayed up. */
  restarts: number;
  /** Unix ms before which the loop does not restart it again. */
  nextTryAt: number;
}

export function emptyHostState(): HostState {
  return {
    ports: {},
    appliedPrograms: {},
    appliedAgents: {},
    agentIds: {},
    appliedShared: '',
    appliedInputs: '',
    pendingRestart: [],
    problem: null,
    invalidAgents: {},
    runtimeVersion: null,
    configRevision: null,
    limitsRestartPending: false,
    sandboxProblem: null,
    capacityProblem: null,
    authProblem: null,
    tokenSource: null,
    cosPublished: '',
    restartRequests: {},
    health: {},
    staleAgents: {},
    placement: null,
  };
}

export function loadHostState(paths: HostPaths): HostState {
  return { ...emptyHostState(), ...readJsonFile<Partial<HostState>>(paths.stateFile, {}) };
}

export function saveHostState(paths: HostPaths, state: HostState): void {
  writeFileAtomic(paths.stateFile, `${JSON.stringify(state, null, 1)}\n`, 0o600);
}
