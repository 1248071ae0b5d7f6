/**
 * The agent's own view of itself, read from its metrics endpoint on 127.0.0.1 (the series are
 * src/agent/metrics.ts's): its state, the job in progress and its last successful poll.
 *
 * Whatever listens on an agent's port is untrusted until shown to be the agent: the scrape reads
 * only from a listener of the agent's uid, ends at a hard deadline however slowly the answer
 * trickles in, and the parser is linear in the size of the answer (docs/security.md).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { JOB_ID_LABEL, JOB_IN_PROGRESS_SERIES, LAST_POLL_SERIES, STATE_LABEL, STATE_SERIES } from '../../common/contract';
import { agentUserName } from '../agentusers';
import type { Host } from '../host';

export interface AgentView {
  /** The state the agent last reported (waiting, test, offline, ...), if it said one. */
  state?: string;
  /** The job it is running, if any. */
  jobId?: string;
  /** Unix seconds of the last poll the server answered, if there was one. */
  lastPoll?: number;
}

/** One scrape, from connect to the last byte: an agent answers in milliseconds. */
export const SCRAPE_DEADLINE_MS = 2000;
/**
 * All the scrapes of one hook together (they run in parallel, a bounded number at a time): past
 * this, the agents not yet read count as unreachable, so a hook never waits on listeners for long.
 */
export const SCRAPES_TOTAL_DEADLINE_MS = 10_000;
/** An agent's metrics are a few KiB; anything much larger is not what we asked for. */
const SCRAPE_MAX_BYTES = 256 * 1024;
const SERIES_NAME = /^[a-z_]+$/;
const VALUE = /^\S+$/;

/** A scrape refused because the port is not the agent's: the message says whose it is. */
export class MetricsPortError extends Error {
  override readonly name = 'MetricsPortError';
}

/**
 * `key="value",key2="value2"` from `start` up to the closing `}`, in one pass; the index after
 * the `}`, or -1 when the text is not that.
 */
function parseLabels(line: string, start: number, labels: Record<string, string>): number {
  let i = start;
  while (i < line.length) {
    if (line[i] === '}') return i + 1;
    const keyStart = i;
    while (i < line.length && /[a-z_]/.test(line[i] as string)) i++;
    if (i === keyStart || line[i] !== '=' || line[i + 1] !== '"') return -1;
    const key = line.slice(keyStart, i);
    i += 2;
    let value = '';
    while (i < line.length && line[i] !== '"') {
      // An escape takes the next character as it is (\" \\ and, as the agent writes it, \n).
      if (line[i] === '\\') i++;
      if (i < line.length) value += line[i++];
    }
    if (i >= line.length) return -1;
    labels[key] = value;
    i++;
    if (line[i] === ',') i++;
  }
  return -1;
}

/** `series{labels} value`, or undefined for any other line (comments, unlabelled series, junk). */
function parseSample(line: string): { series: string; labels: Record<string, string>; value: string } | undefined {
  const brace = line.indexOf('{');
  if (brace <= 0) return undefined;
  const series = line.slice(0, brace);
  if (!SERIES_NAME.test(series)) return undefined;
  const labels: Record<string, string> = {};
  const end = parseLabels(line, brace + 1, labels);
  if (end === -1 || line[end] !== ' ') return undefined;
  const value = line.slice(end + 1);
  return VALUE.test(value) ? { series, labels, value } : undefined;
}

/** The three series we read; every other line is ignored. Linear in the length of `text`. */
export function parseAgentView(text: string): AgentView {
  const view: AgentView = {};
  for (const line of text.split('\n')) {
    const sample = parseSample(line);
    if (!sample) continue;
    const { series, labels, value } = sample;
    if (series === STATE_SERIES && Number(value) === 1 && labels[STATE_LABEL]) view.state = labels[STATE_LABEL];
    else if (series === JOB_IN_PROGRESS_SERIES && labels[JOB_ID_LABEL]) view.jobId = labels[JOB_ID_LABEL];
    else if (series === LAST_POLL_SERIES) view.lastPoll = Number(value);
  }
  return view;
}

/** Whose a listening socket is: its uid, from a /proc/net/tcp{,6} line. */
interface Listener {
  address: string;
  port: number;
  uid: number;
}

const TCP_LISTEN = '0A';
/**
 * Addresses (as the kernel prints them: 32-bit words in host order) whose listener answers a
 * connection to 127.0.0.1: 127.0.0.1 and 0.0.0.0, and IPv6's :: and ::ffff:127.0.0.1 (dual-stack).
 */
const SERVES_LOOPBACK = new Set(['0100007F', '7F000001', '00000000', '00000000000000000000000000000000', '0000000000000000FFFF00000100007F']);
/** /proc/net/tcp holds one line per socket; a host has a few thousand at most. */
const PROC_NET_MAX_BYTES = 16 * 1024 * 1024;

/** The listening sockets of a /proc/net/tcp or tcp6 text (`sl local rem st ... uid timeout inode`). */
export function parseListeners(text: string): Listener[] {
  const listeners: Listener[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const [local = '', state = '', uid = ''] = [fields[1], fields[3], fields[7]];
    const [address = '', portHex = ''] = local.split(':');
    if (state !== TCP_LISTEN || !/^[0-9A-F]+$/.test(address) || !/^[0-9A-F]{4}$/.test(portHex) || !/^\d+$/.test(uid)) continue;
    listeners.push({ address, port: parseInt(portHex, 16), uid: Number(uid) });
  }
  return listeners;
}

function readProcNet(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(0, PROC_NET_MAX_BYTES);
  } catch {
    return '';
  }
}

/**
 * The listeners a connection to 127.0.0.1:<port> may reach. The table is read again after a
 * second, or when it shows no listener on the port: a read of /proc/net/tcp takes the kernel
 * ~4 ms with 1,400 sockets, which for each of 500 agents would be seconds of a hook. An agent that
 * is RUNNING holds its port, so another user's listener can only be missed if the agent died
 * within that second.
 */
const LISTENERS_MAX_AGE_MS = 1000;
let listenersRead: { procNetDir: string; at: number; listeners: Listener[] } | undefined;

function readListeners(procNetDir: string): Listener[] {
  const listeners = ['tcp', 'tcp6'].flatMap((f) => parseListeners(readProcNet(path.join(procNetDir, f)))).filter((l) => SERVES_LOOPBACK.has(l.address));
  listenersRead = { procNetDir, at: Date.now(), listeners };
  return listeners;
}

function loopbackListenersOn(port: number, procNetDir: string): Listener[] {
  const fresh = listenersRead?.procNetDir === procNetDir && Date.now() - listenersRead.at <= LISTENERS_MAX_AGE_MS;
  const onPort = (listeners: Listener[]) => listeners.filter((l) => l.port === port);
  const known = fresh ? onPort(listenersRead?.listeners ?? []) : [];
  return known.length > 0 ? known : onPort(readListeners(procNetDir));
}

/** Who may serve an agent's metrics: the uid and the name to report. */
export interface MetricsOwner {
  uid: number;
  name: string;
}

/** The agent's user on a unit; in a sandbox root, where every agent runs as the charm, the charm's. */
export function metricsOwnerOf(host: Host, agent: string): MetricsOwner {
  const owner = host.driver.agentOwner(agent);
  if (owner) return { uid: owner.uid, name: agentUserName(agent) };
  const uid = process.getuid?.() ?? 0;
  return { uid, name: `the charm's uid ${uid}` };
}

/**
 * Refuses the port unless every listener that would take a connection to 127.0.0.1:<port> is the
 * owner's: another user's listener could have taken the port while the agent was down, and
 * would then decide what the charm believes about the agent.
 */
export function checkListenerOwner(port: number, owner: MetricsOwner, procNetDir = '/proc/net'): void {
  const stranger = loopbackListenersOn(port, procNetDir).find((l) => l.uid !== owner.uid);
  if (stranger) throw new MetricsPortError(`metrics port ${port} is held by uid ${stranger.uid}, not ${owner.name}`);
}

export interface ScrapeOptions {
  /** Whose listener may answer; checked before connecting. */
  owner: MetricsOwner;
  /** Date.now() past which the scrape is given up, at most SCRAPE_DEADLINE_MS from its start. */
  deadlineAt?: number;
  procNetDir?: string;
}

/** Reads /metrics from 127.0.0.1:<port>, ended at `deadlineAt` and at SCRAPE_MAX_BYTES. */
function fetchMetrics(port: number, deadlineAt: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timeLeft = deadlineAt - Date.now();
    if (timeLeft <= 0) {
      reject(new Error('no time left to scrape it'));
      return;
    }
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size > SCRAPE_MAX_BYTES) req.destroy(new Error('metrics answer too large'));
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    // A deadline on the whole exchange, not an idle timeout: a byte a second never ends an idle wait.
    const timer = setTimeout(() => req.destroy(new Error(`no full answer within ${Math.round(timeLeft)} ms`)), timeLeft);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
  });
}

/** Scrapes one agent (its own listener only, bounded in time and size); rejects when it cannot. */
export async function scrapeAgent(port: number, options: ScrapeOptions): Promise<AgentView> {
  checkListenerOwner(port, options.owner, options.procNetDir);
  const deadlineAt = Math.min(Date.now() + SCRAPE_DEADLINE_MS, options.deadlineAt ?? Infinity);
  return parseAgentView(await fetchMetrics(port, deadlineAt));
}
