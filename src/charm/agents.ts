/**
 * The agents of this host: each directory under <configs>/<config-dir> holding a
 * testflinger-agent.conf. The config repo is input from whoever may commit to it, so what is read
 * is bounded: real directories and regular files only, size caps, safe names, one agent per
 * agent_id (docs/security.md).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, parseAgentConfig, type AgentConfig } from '../agent/config';
import { readFileNoFollow, sha256 } from '../common/fsutil';
import type { Host } from './host';
import { SAFE_NAME, quoted } from './values';

export const AGENT_CONF = 'testflinger-agent.conf';
/** A conf is a page of YAML; anything near this is a mistake or an attack. */
const MAX_CONF_BYTES = 256 * 1024;
/** Everything in one agent's directory together (conf, default.yaml, small helper files). */
const MAX_AGENT_DIR_BYTES = 4 * 1024 * 1024;
const MAX_AGENT_DIR_ENTRIES = 1000;
/** Program-file names the charm keeps for itself (the limits drop-in). */
const RESERVED_PREFIX = 'zz-testflinger';

export interface AgentDir {
  /** The directory name: the supervisor program's name. */
  readonly name: string;
  readonly dir: string;
  readonly confPath: string;
  /** Changes when any file of the agent's directory changes. */
  readonly contentHash: string;
  readonly agentId: string;
}

export interface KnownAgent {
  hash: string;
  agentId: string;
}

export interface InvalidAgentDir {
  name: string;
  reason: string;
}

class AgentDirError extends Error {}

/** The agents' directories: <configs>/<config-dir>, through the checkout link (it survives an update). */
export function agentsRootOf(host: Pick<Host, 'paths'>, configDir: string): string {
  return path.join(host.paths.configsDir, configDir);
}

/** The one place an agent's conf path is made. */
export function agentConfPath(agentsRoot: string, agent: string): string {
  return path.join(agentsRoot, agent, AGENT_CONF);
}

function readAgentConfText(confPath: string): string {
  try {
    return readFileNoFollow(confPath, MAX_CONF_BYTES).toString('utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new AgentDirError(`${AGENT_CONF} is a link; it must be a regular file`);
    throw new AgentDirError(`${AGENT_CONF}: ${code ?? (error as Error).message.replace(confPath, AGENT_CONF)}`);
  }
}

/** Confs parsed by this process (one event), by path and state dir, with the digest of the text parsed. */
const parsedConfs = new Map<string, { digest: string; config: Readonly<AgentConfig> }>();
/** More agents than any host runs: past it the cache starts over rather than grow. */
const MAX_PARSED_CONFS = 4096;

/**
 * An agent's conf as the agent reads it: with `stateDir`, the basedir defaults its program file
 * gives it (parseAgentConfig). Read afresh each time (bounded, never through a link) and parsed
 * once per content: discovery, the busy check, the cos-agent data and the operations of one
 * event all ask. Throws AgentDirError or ConfigError.
 */
export function readAgentConf(confPath: string, stateDir: string | undefined): Readonly<AgentConfig> {
  const text = readAgentConfText(confPath);
  const key = `${confPath}\0${stateDir ?? ''}`;
  const digest = sha256(text);
  const cached = parsedConfs.get(key);
  if (cached?.digest === digest) return cached.config;
  const config = Object.freeze(parseAgentConfig(text, AGENT_CONF, stateDir));
  if (parsedConfs.size >= MAX_PARSED_CONFS) parsedConfs.clear();
  parsedConfs.set(key, { digest, config });
  return config;
}

/** The agent's conf in `configDir`, read with the state dir the host's driver gives that agent. */
export function readAgentConfOf(host: Pick<Host, 'paths' | 'driver'>, configDir: string, agent: string): Readonly<AgentConfig> {
  return readAgentConf(agentConfPath(agentsRootOf(host, configDir), agent), host.driver.agentStateDir(agent));
}

/** The agent's bookkeeping directory (`.<job>.agent`) exists in its execution dir from a job's start to its report. */
function hasJobBookkeeping(executionDir: string): boolean {
  try {
    return fs.readdirSync(executionDir).some((entry) => /^\..+\.agent$/.test(entry));
  } catch {
    return false;
  }
}

/** Whether the agent runs a job, by its conf as the agent reads it (reconcile and the operations ask this). */
export function agentBusy(host: Pick<Host, 'paths' | 'driver'>, configDir: string, agent: string): boolean {
  try {
    return hasJobBookkeeping(readAgentConfOf(host, configDir, agent).execution_basedir);
  } catch {
    // A conf that no longer parses runs no job we could wait for.
    return false;
  }
}

function agentDir(agentsRoot: string, name: string, contentHash: string, agentId: string): AgentDir {
  return { name, dir: path.join(agentsRoot, name), confPath: agentConfPath(agentsRoot, name), contentHash, agentId };
}

/**
 * A digest of the names, kinds and contents under an agent's directory, bounded in bytes and
 * entries. Links are hashed by their target text, never followed; other special files refused.
 */
function hashAgentDir(dir: string): string {
  const h = createHash('sha256');
  let bytes = 0;
  let entries = 0;
  const walk = (rel: string): void => {
    const list = fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of list) {
      if (++entries > MAX_AGENT_DIR_ENTRIES) throw new AgentDirError(`holds more than ${MAX_AGENT_DIR_ENTRIES} files`);
      const relPath = path.join(rel, entry.name);
      if (entry.isDirectory()) {
        h.update(`d ${relPath}\0`);
        walk(relPath);
      } else if (entry.isSymbolicLink()) {
        h.update(`l ${relPath}\0${fs.readlinkSync(path.join(dir, relPath))}\0`);
      } else if (entry.isFile()) {
        const data = readFileNoFollow(path.join(dir, relPath), MAX_AGENT_DIR_BYTES - bytes);
        bytes += data.length;
        h.update(`f ${relPath}\0`).update(data).update('\0');
      } else {
        throw new AgentDirError(`${quoted(relPath)} is not a regular file, directory or link`);
      }
    }
  };
  try {
    walk('');
  } catch (error) {
    if (error instanceof AgentDirError) throw error;
    throw new AgentDirError(`is larger than ${MAX_AGENT_DIR_BYTES} bytes or unreadable`);
  }
  return h.digest('hex');
}

function checkName(name: string): void {
  if (!SAFE_NAME.test(name)) throw new AgentDirError('directory name must be letters, digits, . _ - (at most 64), starting with a letter or digit');
  if (name.startsWith(RESERVED_PREFIX)) throw new AgentDirError(`directory names starting with ${RESERVED_PREFIX} are the charm's own`);
}

/**
 * @param knownGood agents valid when last applied; one whose files still hash the same is not
 *   parsed again (hundreds of agents, most unchanged).
 * @param stateDirOf each agent's state dir, as its program file gives it (confs are read as the agent reads them).
 */
export function discoverAgents(
  agentsRoot: string,
  knownGood: Readonly<Record<string, KnownAgent>>,
  stateDirOf: (agent: string) => string | undefined,
): { agents: AgentDir[]; invalid: InvalidAgentDir[] } {
  const agents: AgentDir[] = [];
  const invalid: InvalidAgentDir[] = [];
  // Dirents are not followed: a link named like an agent is not a directory here.
  const entries = fs.readdirSync(agentsRoot, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const dir = path.join(agentsRoot, entry.name);
    const confPath = agentConfPath(agentsRoot, entry.name);
    if (!fs.lstatSync(confPath, { throwIfNoEntry: false })) continue;
    try {
      checkName(entry.name);
      const contentHash = hashAgentDir(dir);
      const known = knownGood[entry.name];
      if (known?.hash === contentHash) {
        agents.push(agentDir(agentsRoot, entry.name, contentHash, known.agentId));
        continue;
      }
      const config = readAgentConf(confPath, stateDirOf(entry.name));
      agents.push(agentDir(agentsRoot, entry.name, contentHash, config.agent_id));
    } catch (error) {
      const known = error instanceof AgentDirError || error instanceof ConfigError;
      invalid.push({ name: entry.name, reason: known ? (error as Error).message : `unreadable: ${(error as Error).message}` });
    }
  }
  return refuseDuplicateIds(agents, invalid);
}

/** Two directories with one agent_id would fight over one server identity: neither runs. */
function refuseDuplicateIds(agents: AgentDir[], invalid: InvalidAgentDir[]): { agents: AgentDir[]; invalid: InvalidAgentDir[] } {
  const byId = new Map<string, string[]>();
  for (const agent of agents) byId.set(agent.agentId, [...(byId.get(agent.agentId) ?? []), agent.name]);
  const kept: AgentDir[] = [];
  for (const agent of agents) {
    const sharing = byId.get(agent.agentId) ?? [];
    if (sharing.length === 1) {
      kept.push(agent);
      continue;
    }
    const others = sharing.filter((n) => n !== agent.name).join(', ');
    invalid.push({ name: agent.name, reason: `agent_id ${quoted(agent.agentId, 64)} is also the agent_id of ${others}` });
  }
  return { agents: kept, invalid: invalid.sort((a, b) => (a.name < b.name ? -1 : 1)) };
}
