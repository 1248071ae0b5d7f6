/**
 * The unit's summary on `<prefix>/host` (retained): its agents with their supervisord states,
 * the health loop's line, the charm's revision. Published from hooks over a short-lived
 * connection that gives up after a few seconds: a broker that is down or refuses the charm is
 * logged and never fails the hook.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadMqttBundle } from '../agent/mqtt/loader';
import { hostTopic, parseCredentials, type MqttCredentials } from '../agent/mqtt/topics';
import { readFileNoFollow } from '../common/fsutil';

/** How long a hook may spend on the broker, connecting and publishing together. */
export const HOST_PUBLISH_TIMEOUT_MS = 5000;
const CHARM_URL_MAX = 512;

export interface HostSummary {
  unit: string;
  /** Each agent's supervisord state (RUNNING, STARTING, FATAL...); its own status topic says what it does. */
  agents: Record<string, string>;
  /** Agents skipped for a bad conf. */
  invalid: string[];
  /** The health loop's line ("12 agents: 9 waiting, ..."), when this hook ran it. */
  summary: string | null;
  /** From the charm URL Juju leaves in the charm directory (`ch:amd64/testflinger-agent-host-12` → `12`). */
  charm_revision: string | null;
  runtime_version: string | null;
  config_revision: string | null;
  updated_at: string;
}

/** The revision at the end of the charm URL in `<charmDir>/.juju-charm`; null outside Juju. */
export function charmRevision(charmDir: string): string | null {
  try {
    const url = readFileNoFollow(path.join(charmDir, '.juju-charm'), CHARM_URL_MAX).toString('utf8').trim();
    return /-(\d+)$/.exec(url)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** The credentials file the charm wrote (blank: anonymous). */
export function readCharmCredentials(file: string): MqttCredentials | undefined {
  return fs.existsSync(file) ? parseCredentials(fs.readFileSync(file, 'utf8')) : undefined;
}

/** Connects, publishes one retained message (QoS 1, acknowledged), disconnects; rejects on refusal or after `timeoutMs`. */
export function publishRetainedOnce(url: string, credentials: MqttCredentials | undefined, topic: string, payload: string, timeoutMs = HOST_PUBLISH_TIMEOUT_MS): Promise<void> {
  const client = loadMqttBundle().connect(url, {
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
    // No table of 65,536 packet-id buffers for one message (MQTT.js's default).
    writeCache: false,
    clientId: `tf-charm-${process.pid}-${Date.now().toString(36)}`,
    ...(credentials ? { username: credentials.username, password: credentials.password } : {}),
  });
  return new Promise<void>((resolve, reject) => {
    const finish = (error?: Error) => {
      clearTimeout(timer);
      client.end(true);
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs / 1000}s`)), timeoutMs);
    client.on('error', (error) => finish(error));
    client.on('close', () => finish(new Error('the connection closed')));
    client.on('connect', () => client.publish(topic, payload, { qos: 1, retain: true }, (error) => finish(error ?? undefined)));
  });
}

/** Publishes the summary on `<prefix>/host`; returns why not (for the log), or undefined. */
export async function publishHostSummary(url: string, prefix: string, credentialsFile: string, summary: HostSummary): Promise<string | undefined> {
  try {
    await publishRetainedOnce(url, readCharmCredentials(credentialsFile), hostTopic(prefix), JSON.stringify(summary));
    return undefined;
  } catch (error) {
    return `mqtt: host summary not published to ${url}: ${(error as Error).message}`;
  }
}

/** Clears the retained summary (an empty retained message), so a removed unit leaves no host behind; returns why not. */
export async function clearHostSummary(url: string, prefix: string, credentialsFile: string): Promise<string | undefined> {
  try {
    await publishRetainedOnce(url, readCharmCredentials(credentialsFile), hostTopic(prefix), '');
    return undefined;
  } catch (error) {
    return `mqtt: host summary not cleared on ${url}: ${(error as Error).message}`;
  }
}
