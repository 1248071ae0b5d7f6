/**
 * The unit's status, from facts alone: the config (or why it is bad), the state the event left,
 * and supervisord's programs. Pure; the charm reads the facts once at the end of every event.
 */
import { ActiveStatus, BlockedStatus, statusFromName, WaitingStatus, type StatusBase } from '../ops';
import { SECRET_MASK } from '../common/masker';
import { CharmConfigError, type CharmConfig } from './config';
import { unpinnedHostKeyNote } from './gitaccess';
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

/** States in which an agent is up, or on its way up; every other one is a failure to show. */
const UP_STATES = new Set(['RUNNING', 'STARTING']);
/** A start error quoted in the status is cut to fit; below this it says nothing and is left out. */
const START_ERROR_MIN = 16;

/**
 * The expected agents supervisord does not have up (BACKOFF, FATAL, EXITED, STOPPED, missing),
 * in the order the status names them; the first STATUS_NAMES_SHOWN are named.
 */
export function downPrograms(expected: readonly string[], programs: readonly ProgramStatus[]): string[] {
  const up = new Set(programs.filter((p) => UP_STATES.has(p.state)).map((p) => p.name));
  return expected.filter((n) => !up.has(n));
}

/**
 * States of an agent that failed to start or exited on its own: its log's last error says why.
 * Not STOPPED (an operator stopped it; its last error may be old) nor a program supervisord lacks.
 */
const START_FAILED_STATES = new Set(['BACKOFF', 'FATAL', 'EXITED']);

/**
 * The agents whose start error the status may quote: the down ones it names, if they failed, and
 * the ones this hook's health check started again after they failed (`retried`, still STARTING).
 */
export function programsToExplain(expected: readonly string[], programs: readonly ProgramStatus[], retried: readonly string[] = []): string[] {
  const failed = new Set(programs.filter((p) => START_FAILED_STATES.has(p.state) || (p.state === 'STARTING' && retried.includes(p.name))).map((p) => p.name));
  // In the order the status names them, and no more than it names: one log read each.
  const named = [...new Set([...downPrograms(expected, programs), ...retried.filter((n) => expected.includes(n))])].slice(0, STATUS_NAMES_SHOWN);
  return named.filter((n) => failed.has(n));
}

/** A line of the agent's log file format (logger.ts) at ERROR or above: its message. */
const LOGGED_ERROR = /^\d{4}-\d\d-\d\dT[\d:.]+Z \S+ (?:ERROR|CRITICAL) (.+)$/;
/** A line the agent (main.ts) or its wrapper writes to stderr when it cannot go on: its message. */
const PROGRAM_ERROR = /^testflinger-agent(?:-contained)?: (.+)$/;
/**
 * Characters a status line must not carry: C0/C1 controls, and the invisible ones that reorder
 * or hide text (bidi controls, zero-width, line separators).
 */
// eslint-disable-next-line no-control-regex
const UNSHOWABLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]+/g;
/**
 * Long runs of token characters: agents never log a secret, but should one ever reach a log
 * line, a token, key or password-like run is not repeated in `juju status`.
 */
const TOKEN_LIKE = /[A-Za-z0-9+=_-]{32,}/g;

/**
 * The agent's own last error, from the tail of its supervisord log (stdout and stderr in one):
 * the last line that is an error, sanitised and with token-like runs masked, or undefined. The
 * caller masks the charm's known secrets in the tail first.
 * @param cut whether the tail starts mid-line (its first line is then a fragment, and dropped).
 */
export function lastErrorLine(tail: string, cut: boolean): string | undefined {
  const lines = tail.split('\n');
  if (cut) lines.shift();
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = (lines[i] as string).replace(/\r$/, '');
    const found = LOGGED_ERROR.exec(line)?.[1] ?? PROGRAM_ERROR.exec(line)?.[1];
    if (found === undefined) continue;
    const text = found.replace(UNSHOWABLE, ' ').replace(TOKEN_LIKE, SECRET_MASK).replace(/\s+/g, ' ').trim();
    if (text) return text;
  }
  return undefined;
}

/** What update-status's health check adds to the agents' status. */
export interface HealthFindings {
  /** The summary line ("3 agents: 2 waiting, 1 test") said instead of the count when all run. */
  summary?: string | undefined;
  /** Said after the status once agents were applied ("stale: agent-3 (no poll for 5m)"). */
  notes?: readonly string[];
}

/**
 * @param programs supervisord's programs, or null when it is not answering; read only when
 *   `statusNeedsPrograms` says so.
 * @param why what explains agents that are down (WhyDown); none by default.
 */
export function unitStatus(config: CharmConfig | CharmConfigError, state: HostState, programs: readonly ProgramStatus[] | null, why: Partial<WhyDown> = {}, health: HealthFindings = {}): StatusBase {
  const status = statusBeforeEliding(config, state, programs, { startErrors: new Map(), retried: [], room: STATUS_MAX, ...why }, health.summary);
  const notes = [...placementNotes(state), ...(expectedPrograms(state).length > 0 ? (health.notes ?? []) : [])];
  const full = [status.message, ...notes].join('; ');
  // Long values (a 5,000-character branch, a long reason from git) never reach `juju status` whole.
  const short = elide(full, STATUS_MAX);
  return short === status.message ? status : statusFromName(status.name, short);
}

function statusBeforeEliding(config: CharmConfig | CharmConfigError, state: HostState, programs: readonly ProgramStatus[] | null, why: WhyDown, summary: string | undefined): StatusBase {
  if (config instanceof CharmConfigError) return new BlockedStatus(`${config.message}; host unchanged`);
  if (state.problem) return new BlockedStatus(state.problem);
  if (state.capacityProblem) return new BlockedStatus(state.capacityProblem);
  if (state.authProblem) return new BlockedStatus(state.authProblem);
  if (sandboxBlocks(config, state)) {
    return new BlockedStatus(`test-sandbox: bwrap cannot make a sandbox here (${elide(state.sandboxProblem ?? '', 80)}); set test-sandbox=false to run tests on the bare host`);
  }
  const expected = expectedPrograms(state);
  const invalid = Object.keys(state.invalidAgents);
  const sharing = state.placement !== null && state.placement.mode !== 'alone';
  if (expected.length === 0 && sharing) {
    // Another unit of the application runs the agents, or will once it has stopped them.
    const view = state.placement;
    const unplacedYet = view?.mode === 'peers' && view.version === 0;
    return Object.keys(view?.waiting ?? {}).length > 0 || unplacedYet ? new WaitingStatus('no agents running here yet') : new ActiveStatus('no agents placed on this unit');
  }
  if (expected.length === 0) {
    return invalid.length > 0
      ? new BlockedStatus(`no valid agents: ${listNames(invalid)} have a bad testflinger-agent.conf`)
      : new BlockedStatus('no agents found under config-dir');
  }
  if (programs === null) return new BlockedStatus('supervisord is not running');
  return statusFromPrograms(config, state, expected, invalid, programs, why, summary);
}

/**
 * What the placement adds (peers.ts): agents that stop here once their job ends, agents placed
 * here that another unit has still to stop, and pins ignored or unreadable.
 */
function placementNotes(state: HostState): string[] {
  const view = state.placement;
  if (!view) return [];
  const notes: string[] = [];
  if (view.stopping.length > 0) notes.push(`moved away, stopping after the job: ${listNames(view.stopping)}`);
  const waiting = Object.keys(view.waiting);
  if (waiting.length > 0) notes.push(`waiting for ${[...new Set(Object.values(view.waiting))].join(', ')} to stop ${listNames(waiting)}`);
  return [...notes, ...view.notes];
}

export interface WhyDown {
  /** The last error line of down agents (`lastErrorLine`), by name. */
  startErrors: ReadonlyMap<string, string>;
  /** Agents this hook's health check started again after they failed. */
  retried: readonly string[];
  /** How many characters the message may take: less than STATUS_MAX when notes go before it. */
  room: number;
}

/** Cut in the middle: an error's end (`...: permission denied`) says most, its start says where. */
function elideMiddle(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor((max - 1) / 3);
  return `${text.slice(0, head)}…${text.slice(text.length - (max - 1 - head))}`;
}

/**
 * `agent-2 cannot start: "<its last error>", agent-3 FATAL and 2 more; 1 of 5 agents running`:
 * each named agent with its own last error when there is one, the errors cut so that the whole
 * line stays within `room` (an error left with less than START_ERROR_MIN is left out).
 */
function downText(down: readonly string[], stateOf: (name: string) => string, startErrors: ReadonlyMap<string, string>, suffix: string, room: number): string {
  const shown = down.slice(0, STATUS_NAMES_SHOWN);
  const more = down.length > STATUS_NAMES_SHOWN ? ` and ${down.length - STATUS_NAMES_SHOWN} more` : '';
  const plain = (n: string) => `${n} ${stateOf(n)}`;
  // STARTING here: the health check started it again after it failed; the error is its last.
  const explained = (n: string, error: string) => `${n} cannot start${stateOf(n) === 'STARTING' ? ' (retrying)' : ''}: "${error}"`;
  let withError = shown.filter((n) => startErrors.has(n));
  while (withError.length > 0) {
    const fixed = shown.map((n) => (withError.includes(n) ? explained(n, '') : plain(n))).join(', ').length + more.length + suffix.length;
    const each = Math.floor((room - fixed) / withError.length);
    if (each >= START_ERROR_MIN) {
      const parts = shown.map((n) => (withError.includes(n) ? explained(n, elideMiddle(startErrors.get(n) as string, each)) : plain(n)));
      return `${parts.join(', ')}${more}${suffix}`;
    }
    withError = withError.slice(0, -1);
  }
  return `${shown.map(plain).join(', ')}${more}${suffix}`;
}

/** @param summary said instead of "N agents running" when all run (update-status's health summary). */
function statusFromPrograms(config: CharmConfig, state: HostState, expected: readonly string[], invalid: readonly string[], programs: readonly ProgramStatus[], why: WhyDown, summary: string | undefined): StatusBase {
  const byName = new Map<string, ProgramStatus>(programs.map((s) => [s.name, s]));
  const stateOf = (name: string) => byName.get(name)?.state ?? 'MISSING';
  // An agent started again after it failed is still down until it runs: named, with its error.
  const retrying = expected.filter((n) => stateOf(n) === 'STARTING' && why.retried.includes(n) && why.startErrors.has(n));
  const down = [...downPrograms(expected, programs), ...retrying];
  const starting = expected.filter((n) => stateOf(n) === 'STARTING' && !retrying.includes(n));
  const running = expected.length - down.length - starting.length;
  const badConf = invalid.length > 0 ? `; bad conf: ${listNames(invalid)}` : '';
  if (down.length > 0) return new BlockedStatus(downText(down, stateOf, why.startErrors, `; ${running} of ${expected.length} agents running${badConf}`, why.room));
  const startingToo = starting.length > 0 ? `, ${starting.length} starting` : '';
  if (invalid.length > 0) return new BlockedStatus(`${running} agents running${startingToo}; bad conf: ${listNames(invalid)} (see juju debug-log)`);
  // Not waited for: the hook that started them ends now, and update-status says how they settled
  // (supervisord's startsecs is 1 s; one that fails shows as BACKOFF or FATAL with its error).
  // Not blocking, but for the operator to act on: said as long as it holds.
  const operatorNotes = `${config['test-sandbox'] ? '' : '; test sandbox off'}${unpinnedHostKeyNote(config)}`;
  if (starting.length > 0) return new WaitingStatus(`${running === 0 ? `${starting.length} agent${starting.length === 1 ? '' : 's'} starting` : `${running} agents running, ${starting.length} starting`}${operatorNotes}`);
  if (state.pendingRestart.length > 0) return new WaitingStatus(`${running} agents running; restart pending for ${listNames(state.pendingRestart)}`);
  const pending = state.limitsRestartPending ? '; supervisord restart for new limits waits until no agent runs a job' : '';
  return new ActiveStatus(`${summary ?? `${running} agent${running === 1 ? '' : 's'} running`}${operatorNotes}${pending}`);
}
