/**
 * What the charm tells a Grafana Agent over `cos-agent`: one scrape target per agent it runs,
 * with the charm's dashboards and rules (cos.ts builds the bag; docs/observability.md).
 */
import * as path from 'node:path';
import { parseAgentConfig } from '../agent/config';
import { sha256 } from '../common/fsutil';
import { AGENT_CONF, readAgentConfText } from './agents';
import { providerUnitBag, providerUnitData, readCosBundle, type AgentScrapeTarget, type JujuTopology } from './cos';
import type { HostPaths } from './paths';
import type { HostState } from './state';

/** The agents supervisord runs, on their metrics ports, with the queues their confs serve. */
export function cosScrapeTargets(paths: HostPaths, configDir: string, state: HostState): AgentScrapeTarget[] {
  return Object.entries(state.ports)
    .filter(([name]) => state.appliedPrograms[name] !== undefined)
    .map(([name, port]) => ({ name, agentId: state.agentIds[name] ?? name, port, queues: agentQueues(path.join(paths.configsDir, configDir, name, AGENT_CONF)) }));
}

/** An agent kept on its last good program while its conf is bad still gets scraped, queue-less. */
function agentQueues(confPath: string): string[] {
  try {
    return parseAgentConfig(readAgentConfText(confPath), AGENT_CONF).job_queues;
  } catch {
    return [];
  }
}

/**
 * What the published data derives from: when it has not changed since the last publication, a
 * hook need not even ask Juju for the relation (an unchanged config-changed stays cheap).
 */
export function cosInputsDigest(state: HostState, charmDir: string): string {
  return sha256(JSON.stringify(state.ports), JSON.stringify(state.appliedAgents), JSON.stringify(state.appliedPrograms), charmDir, state.runtimeVersion ?? '');
}

export function cosUnitBag(input: { paths: HostPaths; configDir: string; state: HostState; charmDir: string; unitName: string; topology: JujuTopology }): Record<string, string> {
  const agents = cosScrapeTargets(input.paths, input.configDir, input.state);
  return providerUnitBag(providerUnitData({ agents, unitName: input.unitName, topology: input.topology, bundle: readCosBundle(input.charmDir) }));
}
