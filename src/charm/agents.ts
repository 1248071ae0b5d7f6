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
  name: string;
  dir: string;
  confPath: string;
  /** Changes when any file of the agent's directory changes. */
  contentHash: string;
  config: AgentConfig;
}

export interface InvalidAgentDir {
  name: string;
  reason: string;
}

export function discoverAgents(agentsRoot: string): { agents: AgentDir[]; invalid: InvalidAgentDir[] } {
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
    try {
      const config = parseAgentConfig(fs.readFileSync(confPath, 'utf8'), AGENT_CONF);
      agents.push({ name: entry.name, dir, confPath, contentHash: hashTree(dir), config });
    } catch (error) {
      invalid.push({ name: entry.name, reason: error instanceof ConfigError ? error.message : String(error) });
    }
  }
  return { agents, invalid };
}
