/**
 * The unit's status, from facts alone: the config (or why it is bad), the state the event left,
 * and supervisord's programs. Pure; the charm reads the facts once at the end of every event.
 */
import { ActiveStatus, BlockedStatus, WaitingStatus, type StatusBase } from '../ops';
import { CharmConfigError, type CharmConfig } from './config';
import type { HostState } from './state';
import type { ProgramStatus } from './supervisor';
import { elide } from './values';

/** Shown in status for at most this many agents; the log has them all. */
const STATUS_NAMES_SHOWN = 3;
/** `juju status` shows one line; ours never grows past this. */
export const STATUS_MAX = 200;

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, STATUS_NAMES_SHOWN).map((n) => elide(n, 40)).join(', ');
  return names.length > STATUS_NAMES_SHOWN ? `${shown} and ${names.length - STATUS_NAMES_SHOWN} more` : shown;
}

/** The agents the state expects supervisord to run, sorted. */
export function expectedPrograms(state: HostState): string[] {
  return Object.keys(state.appliedPrograms).sort();
}

/** Whether the status depends on supervisord at all (it does once agents were applied). */
export function statusNeedsPrograms(config: CharmConfig | CharmConfigError, state: HostState): boolean {
  return !(config instanceof CharmConfigError) && !state.problem && !state.capacityProblem && !state.authProblem && !sandboxBlocks(config, state) && expectedPrograms(state).length > 0;
}

/** The sandbox is on and cannot run: test phases fail until the operator acts. */
function sandboxBlocks(config: CharmConfig, state: HostState): boolean {
  return config['test-sandbox'] && state.sandboxProblem !== null;
}

/**
 * @param programs supervisord's programs, or null when it is not answering; read only when
 *   `statusNeedsPrograms` says so.
 */
export function unitStatus(config: CharmConfig | CharmConfigError, state: HostState, programs: readonly ProgramStatus[] | null): StatusBase {
  const status = statusBeforeEliding(config, state, programs);
  // Long values (a 5,000-character branch, a long reason from git) never reach `juju status` whole.
  const short = elide(status.message, STATUS_MAX);
  return short === status.message ? status : new (status.constructor as new (message: string) => StatusBase)(short);
}

function statusBeforeEliding(config: CharmConfig | CharmConfigError, state: HostState, programs: readonly ProgramStatus[] | null): StatusBase {
  if (config instanceof CharmConfigError) return new BlockedStatus(`${config.message}; host unchanged`);
  if (state.problem) return new BlockedStatus(state.problem);
  if (state.capacityProblem) return new BlockedStatus(state.capacityProblem);
  if (state.authProblem) return new BlockedStatus(state.authProblem);
  if (sandboxBlocks(config, state)) {
    return new BlockedStatus(`test-sandbox: bwrap cannot make a sandbox here (${elide(state.sandboxProblem ?? '', 80)}); set test-sandbox=false to run tests on the bare host`);
  }
  const expected = expectedPrograms(state);
  const invalid = Object.keys(state.invalidAgents);
  if (expected.length === 0) {
    return invalid.length > 0
      ? new BlockedStatus(`no valid agents: ${listNames(invalid)} have a bad testflinger-agent.conf`)
      : new BlockedStatus('no agents found under config-dir');
  }
  if (programs === null) return new BlockedStatus('supervisord is not running');
  return statusFromPrograms(config, state, expected, invalid, programs);
}

function statusFromPrograms(config: CharmConfig, state: HostState, expected: readonly string[], invalid: readonly string[], programs: readonly ProgramStatus[]): StatusBase {
  const byName = new Map<string, ProgramStatus>(programs.map((s) => [s.name, s]));
  const stateOf = (name: string) => byName.get(name)?.state ?? 'MISSING';
  const failing = expected.filter((n) => !['RUNNING', 'STARTING'].includes(stateOf(n)));
  const starting = expected.filter((n) => stateOf(n) === 'STARTING');
  const running = expected.length - failing.length - starting.length;
  const badConf = invalid.length > 0 ? `; bad conf: ${listNames(invalid)}` : '';
  if (failing.length > 0) {
    const shown = failing.slice(0, STATUS_NAMES_SHOWN).map((n) => `${n} ${stateOf(n)}`);
    const more = failing.length > STATUS_NAMES_SHOWN ? ` and ${failing.length - STATUS_NAMES_SHOWN} more` : '';
    return new BlockedStatus(`${shown.join(', ')}${more}; ${running} of ${expected.length} agents running${badConf}`);
  }
  if (invalid.length > 0) return new BlockedStatus(`${running} agents running; bad conf: ${listNames(invalid)} (see juju debug-log)`);
  if (starting.length > 0) return new WaitingStatus(`${running} agents running, ${starting.length} starting`);
  if (state.pendingRestart.length > 0) return new WaitingStatus(`${running} agents running; restart pending for ${listNames(state.pendingRestart)}`);
  const pending = state.limitsRestartPending ? '; supervisord restart for new limits waits until no agent runs a job' : '';
  const sandboxOff = config['test-sandbox'] ? '' : '; test sandbox off';
  return new ActiveStatus(`${running} agent${running === 1 ? '' : 's'} running${sandboxOff}${pending}`);
}
