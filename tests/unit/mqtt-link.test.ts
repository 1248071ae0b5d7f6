/** The agent's MQTT link against a stand-in client: what it keeps while the broker is away, what it sends on connect, how it retries. */
import { EventEmitter } from 'node:events';
import type { IClientOptions, MqttClient } from 'mqtt';
import { silentLogger } from '../../src/agent/logger';
import { MqttLink, type MqttLinkLimits } from '../../src/agent/mqtt/link';

class FakeClient extends EventEmitter {
  connected = false;
  readonly published: { topic: string; payload: string; retain: boolean }[] = [];
  readonly subscribed: string[] = [];
  reconnects = 0;
  stream = { writableLength: 0 };
  constructor(readonly options: IClientOptions) {
    super();
  }
  publish(topic: string, payload: string, options: { retain: boolean }): void {
    this.published.push({ topic, payload, retain: options.retain });
  }
  subscribe(topic: string): void {
    this.subscribed.push(topic);
  }
  reconnect(): void {
    this.reconnects++;
  }
  up(): void {
    this.connected = true;
    this.emit('connect');
  }
  down(): void {
    this.connected = false;
    this.emit('close');
  }
}

const LIMITS: MqttLinkLimits = { maxQueued: 3, maxUnsentBytes: 100, firstBackoffMs: 20, maxBackoffMs: 40, connectTimeoutMs: 1000 };

function link(credentials = () => ({ username: 'u', password: 'p1' })) {
  let client: FakeClient | undefined;
  const connectTo = (_url: string, options: IClientOptions) => (client = new FakeClient(options)) as unknown as MqttClient;
  const l = new MqttLink({ url: 'mqtt://127.0.0.1:1', credentials, will: { topic: 'lab/a/status', payload: '{"state":"offline"}' }, clientIdPrefix: 'tf-a' }, silentLogger, LIMITS, connectTo as never);
  l.start();
  return { link: l, client: client as unknown as FakeClient };
}

describe('the MQTT link', () => {
  it('connects with the last will and the credentials, and no write cache', () => {
    const { client } = link();
    expect(client.options).toMatchObject({ will: { topic: 'lab/a/status', retain: true, qos: 1 }, username: 'u', password: 'p1', writeCache: false, reconnectPeriod: 0, queueQoSZero: false });
  });

  it('keeps the latest retained message per topic and a bounded queue of the rest while the broker is away, then sends them in order', () => {
    const { link: l, client } = link();
    l.subscribe('lab/a/submit', () => undefined);
    l.publish('lab/a/status', 's1', { retain: true });
    l.publish('lab/a/status', 's2', { retain: true });
    for (const n of [1, 2, 3, 4, 5]) l.publish('lab/a/log', `l${n}`, { retain: false });
    expect(client.published).toEqual([]);
    expect(l.counts()).toEqual({ connected: false, dropped: 2 });
    client.up();
    expect(client.subscribed).toEqual(['lab/a/submit']);
    expect(client.published.map((m) => m.payload)).toEqual(['s2', 'l3', 'l4', 'l5']);
    expect(client.published[0]?.retain).toBe(true);
  });

  it('sends the retained messages again on every connect (a broker restarted without persistence gets them back)', () => {
    const { link: l, client } = link();
    client.up();
    l.publish('lab/a/status', 's1', { retain: true });
    client.down();
    client.up();
    expect(client.published.map((m) => m.payload)).toEqual(['s1', 's1']);
  });

  it('drops live messages rather than buffer them behind a socket that does not drain', () => {
    const { link: l, client } = link();
    client.up();
    client.stream.writableLength = 1000;
    l.publish('lab/a/log', 'x', { retain: false });
    l.publish('lab/a/status', 's', { retain: true });
    expect(client.published.map((m) => m.payload)).toEqual(['s']);
    expect(l.dropped).toBe(1);
  });

  it('reconnects after a backoff that doubles up to its bound, with the credentials read again', async () => {
    let password = 'p1';
    const { client } = link(() => ({ username: 'u', password }));
    password = 'p2';
    const started = Date.now();
    client.down();
    await new Promise((r) => setTimeout(r, 35));
    expect(client.reconnects).toBe(1);
    expect(client.options.password).toBe('p2');
    client.down();
    await new Promise((r) => setTimeout(r, 25));
    expect(client.reconnects).toBe(1); // the second wait is 40 ms
    await new Promise((r) => setTimeout(r, 30));
    expect(client.reconnects).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(60);
  });
});
