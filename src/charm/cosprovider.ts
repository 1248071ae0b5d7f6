/**
 * What the charm tells a Grafana Agent over `cos-agent`: one scrape target per agent it runs,
 * with the charm's dashboards and rules (cos.ts builds the bag; docs/observability.md).
 */
import { sha256 } from '../common/fsutil';
import { readAgentConfOf } from './agents';
import { providerUnitBag, providerUnitData, readCosBundle, type AgentScrapeTarget, type JujuTopology } from './cos';
import type { Host } from './host';
import type { HostState } from './state';

type ConfReader = Pick<Host, 'paths' | 'driver'>;

/** The agents supervisord runs, on their metrics ports, with the queues their confs serve. */
function cosScrapeTargets(host: ConfReader, configDir: string, state: HostState): AgentScrapeTarget[] {
  return Object.entries(state.ports)
    .filter(([name]) => state.appliedPrograms[name] !== undefined)
    .map(([name, port]) => ({ name, agentId: state.agentIds[name] ?? name, port, queues: agentQueues(host, configDir, name) }));
}

/** An agent kept on its last good program while its conf is bad still gets scraped, queue-less. */
function agentQueues(host: ConfReader, configDir: string, name: string): string[] {
  try {
    return [...readAgentConfOf(host, configDir, name).job_queues];
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

export function cosUnitBag(input: { host: ConfReader; configDir: string; state: HostState; charmDir: string; unitName: string; topology: JujuTopology }): Record<string, string> {
  const agents = cosScrapeTargets(input.host, input.configDir, input.state);
  return providerUnitBag(providerUnitData({ agents, unitName: input.unitName, topology: input.topology, bundle: readCosBundle(input.charmDir) }));
}
