/** Metrics ports: one per agent, chosen once and kept for as long as the agent exists. */
import * as net from 'node:net';

export const METRICS_PORT_BASE = 8200;
const METRICS_PORT_LAST = 32767;

/** True when nothing listens on the port on this host right now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * Keeps the ports of agents that stay, drops those of agents that left, and gives each new agent
 * the lowest port that no agent holds and nothing on the host listens on.
 */
export async function assignMetricsPorts(
  previous: Readonly<Record<string, number>>,
  agents: readonly string[],
  isFree: (port: number) => Promise<boolean> = portIsFree,
): Promise<Record<string, number>> {
  const ports: Record<string, number> = {};
  for (const name of agents) if (previous[name] !== undefined) ports[name] = previous[name];
  const taken = new Set(Object.values(ports));
  let candidate = METRICS_PORT_BASE;
  for (const name of agents) {
    if (ports[name] !== undefined) continue;
    while (taken.has(candidate) || !(await isFree(candidate))) {
      candidate++;
      if (candidate > METRICS_PORT_LAST) throw new Error('no free metrics port left');
    }
    ports[name] = candidate;
    taken.add(candidate);
  }
  return ports;
}
