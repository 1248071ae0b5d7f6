/**
 * The operator actions on agents (`agent-status`, `set-offline`, `set-online`, `restart-agents`,
 * `agent-logs`): each takes the agents it names from the charm's state, acts, and returns results
 * Juju can show. A refusal that concerns the whole action throws OperationError (the action
 * fails with its message); one that concerns one agent is listed in the results.
 */
import { z } from 'zod';
import type { ActionResults } from '../../ops';
import { maskSecrets } from '../../common/masker';
import type { FileOwner } from '../../common/privileges';
import type { CharmConfig } from '../config';
import { readIfExists } from '../driver';
import type { Host } from '../host';
import { gatherFacts, resultKeys, selectAgents, shortDuration, summaryLine, type AgentFacts } from './facts';
import { REASON_MAX, REASON_PATTERN, removeMarkers, writeMarker } from './markers';
import type { HostState } from '../state';
import type { ProcessInfo } from '../supervisor';
import { expectedPrograms } from '../unitstatus';
import { elide } from '../values';

export class OperationError extends Error {
  override readonly name = 'OperationError';
}

/** What every operation works on: the host, the state as loaded, and the agents' config dir. */
export interface Operation {
  host: Host;
  state: HostState;
  configDir: string;
}

/** supervisord's programs; an operation cannot go on without them. */
async function processes(op: Operation): Promise<ProcessInfo[]> {
  const answer = await op.host.supervisor.processes();
  if (answer === null) throw new OperationError('supervisord is not running');
  return answer;
}

/** The facts of the agents `selection` names (all when empty). */
async function selectedFacts(op: Operation, selection: string): Promise<AgentFacts[]> {
  const names = selectAgents(selection, expectedPrograms(op.state));
  if (names.length === 0) throw new OperationError('no agents on this host');
  return gatherFacts(op.host, op.state, op.configDir, names, await processes(op));
}

function agentStateText(facts: AgentFacts): string {
  return 'error' in facts.view ? facts.view.error : (facts.view.state ?? 'unknown');
}

function statusEntry(facts: AgentFacts, op: Operation): ActionResults {
  const p = facts.process;
  const uptime = p && p.state === 'RUNNING' && p.start > 0 ? shortDuration(p.now - p.start) : '';
  const job = 'error' in facts.view ? '' : (facts.view.jobId ?? '');
  const marker = facts.markers.map((m) => `${m.path}: ${elide(m.reason, 120)}`).join('; ');
  return {
    name: facts.name,
    supervisor: p?.state ?? 'MISSING',
    pid: String(p?.pid ?? 0),
    uptime,
    'agent-state': agentStateText(facts),
    job,
    busy: facts.busy ? 'yes' : 'no',
    'since-last-poll': facts.sincePoll === undefined ? '' : `${facts.sincePoll}s${facts.stale ? ' (stale)' : ''}`,
    'offline-marker': marker || 'none',
    'metrics-port': String(facts.port ?? ''),
    'last-restart': op.state.restartRequests[facts.name] ?? (op.state.pendingRestart.includes(facts.name) ? 'pending (safe)' : 'none'),
  };
}

/** Per agent, keyed as Juju allows (each entry carries the real name). */
function perAgent(facts: readonly AgentFacts[], entry: (f: AgentFacts) => ActionResults): ActionResults {
  const keys = resultKeys(facts.map((f) => f.name));
  return Object.fromEntries(facts.map((f) => [keys.get(f.name) as string, entry(f)]));
}

export async function agentStatus(op: Operation, selection: string): Promise<ActionResults> {
  const facts = await selectedFacts(op, selection);
  return { summary: summaryLine(facts), agents: perAgent(facts, (f) => statusEntry(f, op)) };
}

/** Names, or "none": an empty value is easy to misread in `juju run`'s output. */
const list = (names: readonly string[]) => (names.length > 0 ? names.join(',') : 'none');

export async function setOffline(op: Operation, selection: string, reason: string, ownerOf: (agent: string) => FileOwner | undefined): Promise<ActionResults> {
  const facts = await selectedFacts(op, selection);
  const offline: string[] = [];
  const refused: string[] = [];
  for (const f of facts) {
    try {
      writeMarker(op.host.paths, f.name, reason, ownerOf(f.name));
      offline.push(f.name);
    } catch (error) {
      refused.push(`${f.name}: ${(error as Error).message}`);
    }
  }
  const busy = facts.filter((f) => f.busy && offline.includes(f.name)).map((f) => f.name);
  if (offline.length === 0) throw new OperationError(`no marker written: ${refused.join('; ')}`);
  return {
    offline: list(offline),
    // The agent finishes the job it runs, then takes no more.
    'finishing-a-job': list(busy),
    refused: refused.length > 0 ? refused.join('; ') : 'none',
  };
}

export async function setOnline(op: Operation, selection: string): Promise<ActionResults> {
  const names = selectAgents(selection, expectedPrograms(op.state));
  const removed: string[] = [];
  const left: string[] = [];
  for (const name of names) {
    const agentId = op.state.agentIds[name];
    const result = removeMarkers(op.host.paths, agentId && agentId !== name ? [name, agentId] : [name], op.host.driver.agentOwner(name));
    removed.push(...result.removed);
    left.push(...result.left);
  }
  return { online: list(names), 'markers-removed': list(removed), 'left-not-regular-files': list(left) };
}

export type RestartMode = 'safe' | 'now';

/** What restart-agents asked, recorded in the state for agent-status (`last-restart`). */
function restartNote(mode: RestartMode, at: Date, by: string): string {
  return `${at.toISOString().replace(/\.\d+Z$/, 'Z')} ${mode} by ${by}`;
}

export interface RestartOutcome {
  results: ActionResults;
  /** `restartRequests` entries to record. */
  recorded: Record<string, string>;
}

/**
 * `safe`: USR1, which the agent honours once its job is done. `now`: stop and start through
 * supervisord; an agent running a job is refused unless `force`, since stopping it ends the job.
 */
export async function restartAgents(op: Operation, selection: string, mode: RestartMode, force: boolean, at: Date): Promise<RestartOutcome> {
  const facts = await selectedFacts(op, selection);
  const names = facts.map((f) => f.name);
  if (mode === 'safe') {
    const { signalled, notRunning } = await op.host.supervisor.signal(names, 'USR1');
    const recorded = Object.fromEntries(signalled.map((n) => [n, restartNote(mode, at, 'restart-agents')]));
    // An agent that is not running cannot be asked; mode=now starts it.
    return { recorded, results: { 'asked-to-restart': list(signalled), 'not-running': list(notRunning), mode } };
  }
  const busy = facts.filter((f) => f.busy).map((f) => f.name);
  const refusedBusy = force ? [] : busy;
  const chosen = names.filter((n) => !refusedBusy.includes(n));
  const control = op.host.supervisor;
  const stopRefused = await control.stop(chosen);
  const startRefused = await control.start(chosen.filter((n) => !(n in stopRefused)));
  const failed = { ...stopRefused, ...startRefused };
  const restarted = chosen.filter((n) => !(n in failed));
  const recorded = Object.fromEntries(restarted.map((n) => [n, restartNote(mode, at, force && busy.includes(n) ? 'restart-agents (forced)' : 'restart-agents')]));
  return {
    recorded,
    results: {
      restarted: list(restarted),
      'refused-busy': refusedBusy.length > 0 ? `${refusedBusy.join(',')} (running a job; force=true stops it)` : 'none',
      failed: Object.keys(failed).length > 0 ? Object.entries(failed).map(([n, why]) => `${n}: ${elide(why, 80)}`).join('; ') : 'none',
      mode,
    },
  };
}

/** What `juju run` can show: a tail of the log, never the whole of a busy one. */
const LOG_MAX_BYTES = 64 * 1024;
const LOG_MAX_LINES = 500;
/** Lines of a key shorter than this (`-----END...`, blank) say nothing secret. */
const SECRET_LINE_MIN = 16;

/** The strings to mask: each secret whole, and each long line of a multi-line one (a key's body). */
function maskList(secrets: readonly string[]): string[] {
  const parts = new Set<string>();
  for (const secret of secrets) {
    const trimmed = secret.trim();
    if (trimmed.length >= 4) parts.add(trimmed);
    for (const line of trimmed.split('\n')) if (line.trim().length >= SECRET_LINE_MIN && !/^-----/.test(line.trim())) parts.add(line.trim());
  }
  return [...parts];
}

/** Text with the charm's secrets masked (each whole, and each long line of a multi-line one). */
export function maskCharmSecrets(text: string, secrets: readonly string[]): string {
  return maskSecrets(text, maskList(secrets));
}

/** The last `lines` lines of the agent's log, within LOG_MAX_BYTES, with the charm's secrets masked. */
export async function agentLogs(op: Operation, agent: string, lines: number, secrets: readonly string[]): Promise<ActionResults> {
  if (!expectedPrograms(op.state).includes(agent)) throw new OperationError(`agent: no agent named ${JSON.stringify(elide(agent, 64))} on this host`);
  const tail = await op.host.supervisor.tailLog(agent, LOG_MAX_BYTES);
  let all = tail.text.split('\n');
  if (all[all.length - 1] === '') all.pop();
  // A tail that starts mid-line (the log is longer than we read) drops that partial line.
  if (tail.cut) all = all.slice(1);
  const shown = all.slice(-lines);
  const cut = tail.cut || shown.length < all.length;
  return {
    log: maskCharmSecrets(shown.join('\n'), secrets),
    lines: String(shown.length),
    cut: cut ? `yes: the last ${shown.length} lines (at most ${lines} lines, ${LOG_MAX_BYTES / 1024} KiB); supervisorctl tail or the log file has the rest` : 'no',
  };
}

/** The charm's own secrets, which no action output may show: the token, the credentials, the key. */
export async function charmSecrets(host: Host, config: CharmConfig, readSecret: (id: string) => Promise<Record<string, string>>): Promise<string[]> {
  const secrets = [config['ssh-private-key']];
  const tokenText = readIfExists(host.paths.tokenFile);
  secrets.push(tokenText);
  try {
    secrets.push(String((JSON.parse(tokenText) as { refresh_token?: unknown }).refresh_token ?? ''));
  } catch {
    // No token file, or not ours: its raw text is masked already.
  }
  const secretId = config['credentials-secret'];
  if (secretId) {
    const content = await readSecret(secretId).catch(() => ({}) as Record<string, string>);
    secrets.push(content['client-id'] ?? '', content['secret-key'] ?? '');
  }
  const mqttSecretId = config['mqtt-credentials-secret'];
  if (mqttSecretId) {
    const content = await readSecret(mqttSecretId).catch(() => ({}) as Record<string, string>);
    secrets.push(content['password'] ?? '');
  }
  return secrets.filter((s) => s.length > 0);
}

const agentsParam = z.string().max(4096).default('');

/**
 * Every action's params, by the action's name, checked before its handler runs. actions.yaml
 * says the same to Juju (names, types, defaults, required, enums): a test holds the two together;
 * what Juju cannot say (lengths, patterns) is checked here only.
 */
export const actionParams = {
  'update-configs': z.object({}).strict(),
  // Juju reads `juju run` values as YAML and checks them against actions.yaml: `branch=2024.10` is
  // a number there and Juju refuses it before the charm runs (the README says to use --string-args).
  'update-testflinger': z.object({ branch: z.string().default('') }).strict(),
  'agent-status': z.object({ agents: agentsParam }).strict(),
  'set-offline': z
    .object({
      agents: agentsParam,
      reason: z.string().trim().min(1, 'reason is empty').max(REASON_MAX, `reason is longer than ${REASON_MAX} characters`).regex(REASON_PATTERN, 'reason must not contain control characters'),
    })
    .strict(),
  'set-online': z.object({ agents: agentsParam }).strict(),
  'restart-agents': z.object({ agents: agentsParam, mode: z.enum(['safe', 'now']).default('safe'), force: z.boolean().default(false) }).strict(),
  'check-drift': z.object({ fix: z.boolean().default(false) }).strict(),
  'agent-logs': z.object({ agent: z.string().min(1).max(64), lines: z.number().int().min(1).max(LOG_MAX_LINES).default(100) }).strict(),
};

export type ActionName = keyof typeof actionParams;
export type ActionParams<N extends ActionName> = z.output<(typeof actionParams)[N]>;
