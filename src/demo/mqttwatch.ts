/**
 * The demo's MQTT part, when Debian's mosquitto is installed: a broker on 127.0.0.1 for the
 * charm's mqtt-broker, and a subscriber that keeps what the agents and the charm publish so the
 * demo can show a few messages. Without mosquitto the demo runs as before, saying so in one line.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { loadMqttBundle } from '../agent/mqtt/loader';

const MOSQUITTO = '/usr/sbin/mosquitto';
const CONNECT_TIMEOUT_MS = 10_000;

export interface DemoMessage {
  topic: string;
  text: string;
}

export interface DemoBroker {
  url: string;
  messages: DemoMessage[];
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  const probe = net.createServer();
  return new Promise((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** mosquitto on a free loopback port and a subscriber to everything; undefined without mosquitto. */
export async function startDemoBroker(print: (line: string) => void): Promise<DemoBroker | undefined> {
  if (!fs.existsSync(MOSQUITTO)) {
    print('   (no mosquitto installed: the MQTT part is skipped; apt-get install mosquitto to see it)');
    return undefined;
  }
  const port = await freePort();
  const broker = spawn(MOSQUITTO, ['-p', String(port)], { stdio: 'ignore' });
  const url = `mqtt://127.0.0.1:${port}`;
  const messages: DemoMessage[] = [];
  // mosquitto takes a moment to listen: the client retries until it is up.
  const client = loadMqttBundle().connect(url, { reconnectPeriod: 100, connectTimeout: CONNECT_TIMEOUT_MS });
  client.on('error', () => undefined);
  client.on('message', (topic, payload) => messages.push({ topic, text: payload.toString('utf8') }));
  const stop = async () => {
    await client.endAsync(true);
    broker.kill('SIGTERM');
  };
  const connected = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS);
    client.once('connect', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (!connected) {
    print(`   mosquitto did not answer on ${url}: the MQTT part is skipped`);
    await stop();
    return undefined;
  }
  await client.subscribeAsync('#', { qos: 1 });
  print(`   mosquitto on ${url}; the charm's mqtt-broker points at it`);
  return { url, messages, stop };
}

/** A few of the messages seen: the job's agent's state changes, the job as its last, and the unit's summary. */
export function showMessages(messages: readonly DemoMessage[], jobId: string, print: (line: string) => void): void {
  const states = messages.filter((m) => m.topic.endsWith('/status') && m.text.includes(jobId));
  const lastJob = messages.filter((m) => m.topic.endsWith('/last_job') && m.text.includes(jobId));
  const host = messages.filter((m) => m.topic.endsWith('/host')).slice(-1);
  for (const m of [...states, ...lastJob, ...host]) print(`   ${m.topic} ${m.text.length > 160 ? `${m.text.slice(0, 157)}...` : m.text}`);
  print(`   (${messages.length} messages in all; watch them live with: mosquitto_sub -v -t '#')`);
}
