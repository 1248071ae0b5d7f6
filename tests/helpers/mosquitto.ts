/**
 * A real Debian mosquitto on 127.0.0.1, run by the test with its own config on a free port:
 * anonymous, or with users from a password file made by mosquitto_passwd. `restart` brings it
 * back on the same port (a broker restart mid-job). And a real MQTT.js subscriber that keeps
 * every message it sees, to read what agents and the charm publish.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { freePort } from './sshd';
import { eventually, onCleanup, tempDir } from './tmp';

export const MOSQUITTO = '/usr/sbin/mosquitto';

export function haveMosquitto(): boolean {
  return fs.existsSync(MOSQUITTO);
}

export class TestMosquitto {
  readonly dir = tempDir('mosquitto');
  port = 0;
  private child: ChildProcess | undefined;

  /** `users`: name → password; the broker then refuses anyone else. */
  constructor(private readonly users?: Record<string, string>) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (this.port === 0) this.port = await freePort();
    const lines = [`listener ${this.port} 127.0.0.1`, 'persistence false', 'user root', 'log_dest stderr', 'log_type error', 'log_type warning'];
    if (this.users) {
      const file = path.join(this.dir, 'passwords');
      fs.writeFileSync(file, '', { mode: 0o600 });
      for (const [user, password] of Object.entries(this.users)) execFileSync('mosquitto_passwd', ['-b', file, user, password]);
      lines.push('allow_anonymous false', `password_file ${file}`);
    } else {
      lines.push('allow_anonymous true');
    }
    const config = path.join(this.dir, 'mosquitto.conf');
    fs.writeFileSync(config, `${lines.join('\n')}\n`);
    const child = spawn(MOSQUITTO, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    onCleanup(() => this.stop());
    await eventually(() => child.exitCode === null && canConnect(this.port), `mosquitto on port ${this.port}`);
    return this;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }

  /** Down, then up again on the same port; retained messages are gone (no persistence). */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Received {
  topic: string;
  text: string;
  retain: boolean;
}

/** A subscriber that keeps every message under `filter` (retained ones included). */
export class Watcher {
  readonly messages: Received[] = [];
  private constructor(private readonly client: MqttClient) {}

  static async open(url: string, filter: string, credentials?: { username: string; password: string }): Promise<Watcher> {
    const client = connect(url, { reconnectPeriod: 200, connectTimeout: 5000, ...(credentials ?? {}) });
    const watcher = new Watcher(client);
    client.on('message', (topic, payload, packet) => watcher.messages.push({ topic, text: payload.toString('utf8'), retain: packet.retain }));
    client.on('error', () => undefined);
    onCleanup(() => watcher.close());
    await eventually(() => client.connected, `a subscriber on ${url}`);
    await client.subscribeAsync(filter, { qos: 1 });
    return watcher;
  }

  /** The JSON payloads seen on `topic`, in order. */
  json<T = Record<string, unknown>>(topic: string): T[] {
    return this.messages.filter((m) => m.topic === topic && m.text !== '').map((m) => JSON.parse(m.text) as T);
  }

  last<T = Record<string, unknown>>(topic: string): T | undefined {
    return this.json<T>(topic).at(-1);
  }

  publish(topic: string, text: string, options: { retain?: boolean } = {}): Promise<unknown> {
    return this.client.publishAsync(topic, text, { qos: 1, retain: options.retain ?? false });
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}
