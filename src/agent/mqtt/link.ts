/**
 * The agent's connection to an MQTT broker: fire-and-forget publishing that never makes a job or
 * a poll wait. While the broker is away, retained topics keep only their latest message and other
 * messages wait in a bounded queue (the oldest dropped and counted); a stalled socket drops them
 * too. Reconnects back off from 1 s to 30 s, reading the credentials afresh each time (the charm
 * rewrites them in place). Part of the MQTT bundle, loaded only when MQTT is on (loader.ts).
 */
import type { Logger } from '../logger';
import type { IClientOptions, MqttClient } from 'mqtt';
import { connect } from './connect';
import type { MqttCredentials } from './topics';

export interface MqttLinkSettings {
  url: string;
  /** Read at each (re)connect; undefined: connect without a user. */
  credentials: () => MqttCredentials | undefined;
  /** Set by the broker when the agent goes away without saying so (kill -9, a lost link). */
  will: { topic: string; payload: string };
  clientIdPrefix: string;
  /**
   * When the agent subscribes (job submission): the largest packet the broker may send it. Only
   * MQTT 5 can say so, so the link then speaks MQTT 5; a publisher cannot make the agent hold a
   * message of the broker's own limit (mosquitto's: 256 MB) in memory.
   */
  maxIncomingBytes?: number;
}

export interface MqttLinkLimits {
  /** Messages of non-retained topics kept while the broker is away. */
  maxQueued: number;
  /** Bytes the socket may hold unsent before non-retained messages are dropped. */
  maxUnsentBytes: number;
  firstBackoffMs: number;
  maxBackoffMs: number;
  connectTimeoutMs: number;
}

export const DEFAULT_MQTT_LIMITS: MqttLinkLimits = { maxQueued: 200, maxUnsentBytes: 1024 * 1024, firstBackoffMs: 1000, maxBackoffMs: 30_000, connectTimeoutMs: 10_000 };

interface Outgoing {
  topic: string;
  payload: string;
  retain: boolean;
}

/** Fire-and-forget publishing, as MqttLink.publish. */
export type Publish = (topic: string, payload: string, options: { retain: boolean }) => void;

/** What the metrics show of the link. */
export interface MqttLinkCounts {
  connected: boolean;
  dropped: number;
}

export class MqttLink {
  private client: MqttClient | undefined;
  /** Latest message per retained topic: re-sent on every connect, so the broker always has it. */
  private readonly retained = new Map<string, string>();
  /** Non-retained messages waiting for the broker. */
  private queue: Outgoing[] = [];
  private readonly handlers = new Map<string, (payload: Buffer, retained: boolean) => void>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private stopping = false;
  /** The last refusal or error, logged once until the next connect. */
  private lastProblem: string | undefined;
  dropped = 0;

  constructor(
    private readonly settings: MqttLinkSettings,
    private readonly log: Logger,
    private readonly limits: MqttLinkLimits = DEFAULT_MQTT_LIMITS,
    private readonly connectTo: typeof connect = connect,
  ) {
    this.backoffMs = limits.firstBackoffMs;
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  counts(): MqttLinkCounts {
    return { connected: this.connected, dropped: this.dropped };
  }

  /** Connects in the background; returns at once. */
  start(): void {
    const credentials = this.readCredentials();
    const options: IClientOptions = {
      // Unique enough for a broker's session table; node:crypto would cost an idle agent memory.
      clientId: `${this.settings.clientIdPrefix}-${process.pid.toString(36)}${Date.now().toString(36)}`,
      // MQTT.js would otherwise keep 65,536 two-byte buffers for packet ids: 13 MiB.
      writeCache: false,
      clean: true,
      keepalive: 30,
      // Reconnects are ours (backoff, fresh credentials); MQTT.js's own queue is never used.
      reconnectPeriod: 0,
      connectTimeout: this.limits.connectTimeoutMs,
      queueQoSZero: false,
      will: { topic: this.settings.will.topic, payload: Buffer.from(this.settings.will.payload), qos: 1, retain: true },
      ...(credentials ? { username: credentials.username, password: credentials.password } : {}),
      ...(this.settings.maxIncomingBytes ? { protocolVersion: 5, properties: { maximumPacketSize: this.settings.maxIncomingBytes } } : {}),
    };
    const client = this.connectTo(this.settings.url, options);
    this.client = client;
    client.on('connect', () => this.onConnect());
    client.on('close', () => this.onClose());
    client.on('error', (error) => this.problem(error.message));
    client.on('message', (topic, payload, packet) => this.handlers.get(topic)?.(payload, packet.retain));
  }

  /** Publishes now when connected, else keeps it (retained: the latest; others: bounded). */
  publish(topic: string, payload: string, options: { retain: boolean }): void {
    if (options.retain) this.retained.set(topic, payload);
    const message = { topic, payload, retain: options.retain };
    if (this.connected && this.send(message)) return;
    if (!options.retain) this.enqueue(message);
  }

  /** Calls `handler` with each message on `topic`, and whether the broker kept it (subscribed again on every connect). */
  subscribe(topic: string, handler: (payload: Buffer, retained: boolean) => void): void {
    this.handlers.set(topic, handler);
    if (this.connected) this.client?.subscribe(topic, { qos: 1, rap: true });
  }

  /** Publishes `last` (retained) if connected, then disconnects; bounded by `timeoutMs`. */
  async stop(last: { topic: string; payload: string } | undefined, timeoutMs = 2000): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        client.end(true);
        resolve();
      }, timeoutMs);
      const end = () => client.end(false, {}, () => {
        clearTimeout(timer);
        resolve();
      });
      if (last && client.connected) client.publish(last.topic, last.payload, { qos: 1, retain: true }, end);
      else end();
    });
  }

  private readCredentials(): MqttCredentials | undefined {
    try {
      return this.settings.credentials();
    } catch (error) {
      this.problem(`credentials not read: ${(error as Error).message}`);
      return undefined;
    }
  }

  /** Writes to the socket unless it already holds too much; false when the message was not sent. */
  private send(message: Outgoing): boolean {
    const client = this.client as MqttClient;
    const unsent = (client.stream as { writableLength?: number } | undefined)?.writableLength ?? 0;
    if (!message.retain && unsent > this.limits.maxUnsentBytes) {
      this.dropped++;
      return true;
    }
    client.publish(message.topic, message.payload, { qos: message.retain ? 1 : 0, retain: message.retain });
    return true;
  }

  private enqueue(message: Outgoing): void {
    this.queue.push(message);
    while (this.queue.length > this.limits.maxQueued) {
      this.queue.shift();
      this.dropped++;
    }
  }

  private onConnect(): void {
    this.backoffMs = this.limits.firstBackoffMs;
    if (this.lastProblem !== undefined) this.log.info(`mqtt: connected to ${this.settings.url}`);
    this.lastProblem = undefined;
    const client = this.client as MqttClient;
    // Retain-as-published (MQTT 5): a handler can tell a retained message even as it is published.
    for (const topic of this.handlers.keys()) client.subscribe(topic, { qos: 1, rap: true });
    for (const [topic, payload] of this.retained) this.send({ topic, payload, retain: true });
    const waiting = this.queue;
    this.queue = [];
    for (const message of waiting) this.send(message);
  }

  /** The link is down (or never came up): try again after the backoff, with fresh credentials. */
  private onClose(): void {
    if (this.stopping || this.reconnectTimer) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.limits.maxBackoffMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      const client = this.client;
      if (this.stopping || !client) return;
      const credentials = this.readCredentials();
      client.options.username = credentials?.username;
      client.options.password = credentials?.password;
      client.reconnect();
    }, wait);
    this.reconnectTimer.unref();
  }

  /** A broker that refuses us or cannot be reached: said once per distinct reason, never fatal. */
  private problem(reason: string): void {
    if (reason === this.lastProblem) return;
    this.lastProblem = reason;
    this.log.warning(`mqtt: ${this.settings.url}: ${reason} (jobs go on; retrying with backoff)`);
  }
}
