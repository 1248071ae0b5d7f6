/** The agents of this host: each directory under <configs>/<config-dir> holding a testflinger-agent.conf. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, parseAgentConfig, type AgentConfig } from '../agent/config';
import { hashTree } from '../common/fsutil';

export const AGENT_CONF = 'testflinger-agent.conf';
/** Supervisor program names: letters, digits and . _ - (no ':' or spaces, which supervisor reads specially). */
const PROGRAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface AgentDir {
  /** The directory name: the supervisor program's name. */
  readonly name: string;
  readonly dir: string;
  readonly confPath: string;
  /** Changes when any file of the agent's directory changes. */
  readonly contentHash: string;
  /** Parsed on first use: an agent whose files did not change was valid last time. */
  readonly config: AgentConfig;
}

function agentDir(name: string, dir: string, confPath: string, contentHash: string, parsed?: AgentConfig): AgentDir {
  let config = parsed;
  return {
    name,
    dir,
    confPath,
    contentHash,
    get config() {
      config ??= parseAgentConfig(fs.readFileSync(confPath, 'utf8'), AGENT_CONF);
      return config;
    },
  };
}

export interface InvalidAgentDir {
  name: string;
  reason: string;
}

/**
 * @param knownGood content hashes of agents that were valid when last applied; an agent whose
 *   files still hash the same is not parsed again (hundreds of agents, most unchanged).
 */
export function discoverAgents(agentsRoot: string, knownGood: Readonly<Record<string, string>> = {}): { agents: AgentDir[]; invalid: InvalidAgentDir[] } {
  const agents: AgentDir[] = [];
  const invalid: InvalidAgentDir[] = [];
  const entries = fs.readdirSync(agentsRoot, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const dir = path.join(agentsRoot, entry.name);
    const confPath = path.join(dir, AGENT_CONF);
    if (!fs.existsSync(confPath)) continue;
    if (!PROGRAM_NAME.test(entry.name)) {
      invalid.push({ name: entry.name, reason: 'directory name is not a valid supervisor program name' });
      continue;
    }
    const contentHash = hashTree(dir);
    if (knownGood[entry.name] === contentHash) {
      agents.push(agentDir(entry.name, dir, confPath, contentHash));
      continue;
    }
    try {
      const config = parseAgentConfig(fs.readFileSync(confPath, 'utf8'), AGENT_CONF);
      agents.push(agentDir(entry.name, dir, confPath, contentHash, config));
    } catch (error) {
      invalid.push({ name: entry.name, reason: error instanceof ConfigError ? error.message : String(error) });
    }
  }
  return { agents, invalid };
}
