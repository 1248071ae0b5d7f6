import * as net from 'node:net';
import { assignMetricsPorts, METRICS_PORT_BASE, portIsFree } from '../../src/charm/ports';

describe('metrics ports', () => {
  it('keeps the ports of agents that stay and gives new agents the lowest free ones', async () => {
    const busy = new Set([METRICS_PORT_BASE + 1]);
    const ports = await assignMetricsPorts({ b: METRICS_PORT_BASE, gone: METRICS_PORT_BASE + 2 }, ['a', 'b', 'c'], async (p) => !busy.has(p));
    expect(ports).toEqual({ b: METRICS_PORT_BASE, a: METRICS_PORT_BASE + 2, c: METRICS_PORT_BASE + 3 });
  });

  it('sees a port something on the host listens on as taken', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as net.AddressInfo).port;
    expect(await portIsFree(port)).toBe(false);
    server.close();
  });
});
