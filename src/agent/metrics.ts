/**
 * Prometheus metrics of one agent, served as text on its metrics port. Written by hand (no
 * client library): an idle agent's memory is multiplied by the number of devices on a host.
 *
 * Upstream's four series keep upstream's names, labels and buckets, so existing dashboards
 * work; ours carry the `testflinger_agent_` prefix; process metrics use Prometheus' usual names.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { JOB_ID_LABEL, JOB_IN_PROGRESS_SERIES, LAST_POLL_SERIES, MQTT_CONNECTED_SERIES, MQTT_DROPPED_SERIES, PHASES, STATE_LABEL, STATE_SERIES } from '../common/contract';

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function header(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}`;
}

/** One sample per line; a series with no samples still shows its HELP and TYPE. */
function family(name: string, type: 'counter' | 'gauge', help: string, samples: readonly (readonly [Labels, number])[]): string {
  return [header(name, type, help), ...samples.map(([labels, value]) => `${name}${labelText(labels)} ${value}`)].join('\n');
}

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }
  get(labels: Labels): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }
  render(): string {
    return family(`${this.name}_total`, 'counter', this.help, [...this.values.values()].map((e) => [e.labels, e.value] as const));
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {}
  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    const s = this.series.get(key) ?? { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i] = (s.counts[i] ?? 0) + 1;
    });
    s.sum += value;
    s.count++;
    this.series.set(key, s);
  }
  render(): string {
    const lines = [header(this.name, 'histogram', this.help)];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines.join('\n');
  }
}

export const PHASE_DURATION_BUCKETS = [60, 120, 300, 600, 1800, 3600, 7200, 14400] as const;

/** Every state the agent reports to the server: idle, each job phase, and the held states. */
export const AGENT_STATES = ['waiting', ...PHASES, 'offline', 'maintenance', 'restart'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

/** Live-log streams of the running job: fragments waiting to be sent, and dropped so far. */
export interface LiveLogCounts {
  queued: number;
  dropped: number;
}

/** The names of every series this agent exports (dashboards and rules may use only these, and `up`). */
export const EXPORTED_SERIES = [
  'jobs_total',
  'failures_total',
  'phase_duration_seconds',
  'recovery_failures_total',
  STATE_SERIES,
  JOB_IN_PROGRESS_SERIES,
  LAST_POLL_SERIES,
  'testflinger_agent_outbox_results',
  'testflinger_agent_live_log_fragments_queued',
  'testflinger_agent_live_log_fragments_dropped_total',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'process_open_fds',
  'process_start_time_seconds',
] as const;

/** Series shown only when MQTT is on (mqtt-broker set): an agent without it exports what it always did. */
export const MQTT_SERIES = [MQTT_DROPPED_SERIES, MQTT_CONNECTED_SERIES] as const;

/** The MQTT link, read at each scrape. */
export interface MqttCounts {
  connected: boolean;
  dropped: number;
}

function openFds(): number | undefined {
  try {
    // Reading the directory opens one descriptor of its own, which is listed too.
    return fs.readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

export class AgentMetrics {
  readonly jobs = new Counter('jobs', 'Jobs this agent started since it last started');
  readonly failures = new Counter('failures', 'Job phases that ended with a non-zero exit, since the agent last started');
  readonly recoveryFailures = new Counter('recovery_failures', 'Device recoveries that failed since the agent last started');
  readonly phaseDuration = new Histogram('phase_duration_seconds', 'How long each job phase ran, in seconds', PHASE_DURATION_BUCKETS);

  private agentId: string | undefined;
  private state: AgentState | undefined;
  private jobId: string | undefined;
  private lastPollSeconds: number | undefined;
  private outboxResults = 0;
  private liveLogs: (() => LiveLogCounts) | undefined;
  /** Fragments dropped by the live logs of jobs that have ended. */
  private droppedBefore = 0;
  private readonly startTimeSeconds = Date.now() / 1000 - process.uptime();
  private mqtt: (() => MqttCounts) | undefined;

  /** The agent_id label of the agent's own series; until it is known they are not shown. */
  setAgent(agentId: string): void {
    this.agentId = agentId;
  }
  setState(state: string): void {
    if ((AGENT_STATES as readonly string[]).includes(state)) this.state = state as AgentState;
  }
  setJob(jobId: string | undefined): void {
    this.jobId = jobId;
  }
  markPoll(nowMs: number): void {
    this.lastPollSeconds = nowMs / 1000;
  }
  setOutbox(results: number): void {
    this.outboxResults = results;
  }
  /** The running job's live logs, read at each scrape; `undefined` when the job ends. */
  trackLiveLogs(counts: (() => LiveLogCounts) | undefined): void {
    if (this.liveLogs) this.droppedBefore += this.liveLogs().dropped;
    this.liveLogs = counts;
  }

  /** The agent's MQTT link (only when MQTT is on). */
  trackMqtt(counts: () => MqttCounts): void {
    this.mqtt = counts;
  }

  render(): string {
    const families = [this.jobs.render(), this.failures.render(), this.recoveryFailures.render(), this.phaseDuration.render(), ...this.agentFamilies(), ...this.processFamilies()];
    return `${families.join('\n')}\n`;
  }

  private agentFamilies(): string[] {
    if (this.agentId === undefined) return [];
    const agent = { agent_id: this.agentId };
    const live = this.liveLogs?.() ?? { queued: 0, dropped: 0 };
    return [
      family(STATE_SERIES, 'gauge', 'The state the agent last reported: 1 for the current one, 0 for the others', AGENT_STATES.map((s) => [{ ...agent, [STATE_LABEL]: s }, s === this.state ? 1 : 0] as const)),
      family(JOB_IN_PROGRESS_SERIES, 'gauge', 'The job the agent is running (no sample when idle)', this.jobId === undefined ? [] : [[{ ...agent, [JOB_ID_LABEL]: this.jobId }, 1]]),
      family(LAST_POLL_SERIES, 'gauge', 'Unix time of the last poll the server answered', this.lastPollSeconds === undefined ? [] : [[agent, this.lastPollSeconds]]),
      family('testflinger_agent_outbox_results', 'gauge', 'Finished jobs whose results wait on disk for the server to take them', [[agent, this.outboxResults]]),
      family('testflinger_agent_live_log_fragments_queued', 'gauge', 'Live-log fragments of the running job waiting to be sent', [[agent, live.queued]]),
      family('testflinger_agent_live_log_fragments_dropped_total', 'counter', 'Live-log fragments dropped because too many were queued (they stay in the phase logs)', [[agent, this.droppedBefore + live.dropped]]),
      ...this.mqttFamilies(agent),
    ];
  }

  private mqttFamilies(agent: Labels): string[] {
    if (!this.mqtt) return [];
    const { connected, dropped } = this.mqtt();
    return [
      family(MQTT_DROPPED_SERIES, 'counter', 'MQTT messages dropped while the broker was away or slow (the bounded queue was full)', [[agent, dropped]]),
      family(MQTT_CONNECTED_SERIES, 'gauge', '1 while the agent is connected to the MQTT broker (0: away, or it refused the credentials)', [[agent, connected ? 1 : 0]]),
    ];
  }

  private processFamilies(): string[] {
    const cpu = process.cpuUsage();
    const fds = openFds();
    return [
      family('process_cpu_seconds_total', 'counter', 'Total user and system CPU time spent in seconds', [[{}, (cpu.user + cpu.system) / 1e6]]),
      family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes', [[{}, process.memoryUsage.rss()]]),
      ...(fds === undefined ? [] : [family('process_open_fds', 'gauge', 'Number of open file descriptors', [[{}, fds]])]),
      family('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch in seconds', [[{}, this.startTimeSeconds]]),
    ];
  }

  /** Serves /metrics until the returned server is closed. */
  serve(port: number, host: string): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics' && req.url !== '/') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.render());
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(server));
    });
  }
}
