/** Reading an agent's metrics: the parser, the check of whose listener answers, the deadline. */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { checkListenerOwner, MetricsPortError, parseAgentView, parseListeners, scrapeAgent, SCRAPE_DEADLINE_MS } from '../../src/charm/operations/metrics';
import { fakeMetrics, metricsText, trickleMetrics } from '../helpers/charm-operations';
import { onCleanup, tempDir } from '../helpers/tmp';

const OURS = { uid: process.getuid?.() ?? 0, name: 'us' };
const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';

/** A /proc/net/tcp line: a socket at this hex local address, in this state, of this uid. */
function tcpLine(local: string, state: string, uid: number): string {
  return `   0: ${local} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 12345 1 0000000000000000 100 0 0 10 0`;
}

function procNet(tcp: string[], tcp6: string[] = []): string {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'tcp'), [HEADER, ...tcp, ''].join('\n'));
  fs.writeFileSync(path.join(dir, 'tcp6'), [HEADER, ...tcp6, ''].join('\n'));
  return dir;
}

describe('parseAgentView', () => {
  it('reads the state, the job and the last poll, with escaped label values, and ignores the rest', () => {
    const text = [
      '# HELP testflinger_agent_state The state',
      metricsText('a1', { state: 'test', jobId: 'j-1', lastPoll: 1700 }),
      'testflinger_agent_state{agent_id="a\\"1",state="offline"} 0',
      'not a sample line',
    ].join('\n');
    expect(parseAgentView(text)).toEqual({ state: 'test', jobId: 'j-1', lastPoll: 1700 });
    expect(parseAgentView('testflinger_agent_job_in_progress{job_id="a\\"b\\\\c"} 1')).toEqual({ jobId: 'a"b\\c' });
  });

  it('ignores malformed lines instead of guessing', () => {
    for (const line of ['testflinger_agent_state{state="waiting"} ', 'testflinger_agent_state{state="waiting"}1', 'testflinger_agent_state{state="waiting} 1', 'testflinger_agent_state{state=waiting} 1', 'Testflinger_agent_state{state="waiting"} 1']) {
      expect(parseAgentView(line)).toEqual({});
    }
  });

  // Lines that made the regular expressions of before backtrack (quadratic: 0.5 s at 32 KiB, 37 s
  // at 256 KiB); parsed by hand they take milliseconds. The bound only catches a quadratic parser.
  it.each([32 * 1024, 256 * 1024])('returns on hostile lines of %i bytes', (size) => {
    const lines = [`s{${'a'.repeat(size)}} 1`, `s{a="${'\\x'.repeat(size / 2)}} 1`, `s{${'a="",'.repeat(size / 5)}} 1`, `s{a="${'b'.repeat(size)}`, `${'a'.repeat(size)}{`];
    for (const line of lines) {
      const started = Date.now();
      expect(parseAgentView(line)).toEqual({});
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });
});

describe('whose listener answers on the agent port', () => {
  it('reads the listening sockets of /proc/net/tcp, and nothing else', () => {
    const text = [HEADER, tcpLine('0100007F:1F90', '0A', 1001), tcpLine('0100007F:1F91', '01', 0), 'junk'].join('\n');
    expect(parseListeners(text)).toEqual([{ address: '0100007F', port: 8080, uid: 1001 }]);
  });

  it('refuses a port another uid listens on (127.0.0.1, any address or IPv6), naming the uid and the agent user', () => {
    const agent = { uid: 1001, name: 'tf-agent-1' };
    expect(() => checkListenerOwner(8080, agent, procNet([tcpLine('0100007F:1F90', '0A', 1001)]))).not.toThrow();
    // Another port's listener, or a connection (not LISTEN) on ours, is no concern.
    expect(() => checkListenerOwner(8080, agent, procNet([tcpLine('0100007F:1F91', '0A', 0), tcpLine('0100007F:1F90', '01', 0)]))).not.toThrow();
    expect(() => checkListenerOwner(8080, agent, procNet([tcpLine('0100007F:1F90', '0A', 1002)]))).toThrow(new MetricsPortError('metrics port 8080 is held by uid 1002, not tf-agent-1'));
    expect(() => checkListenerOwner(8080, agent, procNet([tcpLine('00000000:1F90', '0A', 0)]))).toThrow(/held by uid 0, not tf-agent-1/);
    expect(() => checkListenerOwner(8080, agent, procNet([], [tcpLine('00000000000000000000000000000000:1F90', '0A', 7)]))).toThrow(/held by uid 7/);
  });

  it('checks the real listener: ours is scraped, and for another uid it is not even connected to', async () => {
    let scrapes = 0;
    const server = http.createServer((_req, res) => {
      scrapes++;
      res.writeHead(200).end(`${metricsText('a1', { state: 'waiting' })}\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    await expect(scrapeAgent(port, { owner: OURS })).resolves.toEqual({ state: 'waiting' });
    await expect(scrapeAgent(port, { owner: { uid: OURS.uid + 4242, name: 'tf-agent-1' } })).rejects.toThrow(`metrics port ${port} is held by uid ${OURS.uid}, not tf-agent-1`);
    expect(scrapes).toBe(1);
  });
});

it('a listener that appeared since the listener table was read is checked all the same', async () => {
  const first = await fakeMetrics(() => '');
  checkListenerOwner(first, OURS);
  // Within the second the table is kept: the new port is not in it, so it is read again.
  const second = await fakeMetrics(() => '');
  expect(() => checkListenerOwner(second, { uid: OURS.uid + 1, name: 'tf-agent-2' })).toThrow(`metrics port ${second} is held by uid ${OURS.uid}, not tf-agent-2`);
});

describe('scrapeAgent deadlines', () => {
  it('gives up on a listener that answers one byte a second at the scrape deadline', async () => {
    const port = await trickleMetrics();
    const started = Date.now();
    await expect(scrapeAgent(port, { owner: OURS })).rejects.toThrow(/no full answer within/);
    // Measured ~2 s; the bound leaves room for a loaded machine.
    expect(Date.now() - started).toBeLessThan(5 * SCRAPE_DEADLINE_MS);
  }, 30_000);

  it('never waits past the deadline it is given, and starts no scrape once it has passed', async () => {
    const port = await trickleMetrics();
    await expect(scrapeAgent(port, { owner: OURS, deadlineAt: Date.now() + 200 })).rejects.toThrow(/no full answer within/);
    const quick = await fakeMetrics(() => metricsText('a1', { state: 'waiting' }));
    await expect(scrapeAgent(quick, { owner: OURS, deadlineAt: Date.now() - 1 })).rejects.toThrow('no time left to scrape it');
  }, 30_000);
});
