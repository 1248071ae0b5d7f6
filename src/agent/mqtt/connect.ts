/**
 * MQTT.js's client over a plain TCP socket, or TLS for `mqtts://`. The package's own connect()
 * loads its WebSocket and TLS transports for every URL (and with them node's http, https, tls and
 * zlib): most of the memory MQTT would cost an idle agent. The client, its packets, keepalive and
 * reconnect handling are the package's.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type { IClientOptions, MqttClient } from 'mqtt';

type StreamBuilder = (client: MqttClient) => Duplex;
type ClientClass = new (streamBuilder: StreamBuilder, options: IClientOptions) => MqttClient;

// The client module alone (the package exports its build/ files by path).
const { default: Client } = require('mqtt/lib/client') as { default: ClientClass };

const DEFAULT_PORTS = { 'mqtt:': 1883, 'mqtts:': 8883 } as const;

/** As MQTT.js's connect(url, options), for mqtt:// and mqtts:// only (checked before: topics.ts). */
export function connect(url: string, options: IClientOptions): MqttClient {
  const parsed = new URL(url);
  const secure = parsed.protocol === 'mqtts:';
  const host = parsed.hostname;
  const port = parsed.port ? Number(parsed.port) : DEFAULT_PORTS[secure ? 'mqtts:' : 'mqtt:'];
  // TLS only for a TLS broker: verified against the system's CAs (and NODE_EXTRA_CA_CERTS).
  const stream: StreamBuilder = () => (secure ? (require('node:tls') as typeof import('node:tls')).connect({ host, port, servername: host }) : net.connect({ host, port }));
  return new Client(stream, { ...options, protocol: secure ? 'mqtts' : 'mqtt', host, port });
}
