/**
 * The MQTT names the charm and the agent agree on: the broker URL, the topic prefix and the
 * topics under it. Checked by the charm (its options) and again by the agent (its environment):
 * anything else is refused, never escaped. Values also travel through a supervisord program
 * file, so they keep to the characters one can carry (src/charm/programfiles.ts).
 */

export class MqttNameError extends Error {
  override readonly name = 'MqttNameError';
}

/** `mqtt://host[:port]` or `mqtts://host[:port]`: a host name or IPv4 address, no user, no path. */
const BROKER_URL = /^(mqtts?):\/\/([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::([0-9]{1,5}))?\/?$/;

/** The broker URL without a trailing slash; refuses credentials, paths, other schemes. */
export function checkBrokerUrl(value: string): string {
  const match = BROKER_URL.exec(value);
  if (!match) throw new MqttNameError('must be mqtt://host:port or mqtts://host:port (a host name or IPv4 address; credentials go in mqtt-credentials-secret)');
  const port = match[3] === undefined ? undefined : Number(match[3]);
  if (port !== undefined && (port < 1 || port > 65535)) throw new MqttNameError('has a port outside 1-65535');
  return value.replace(/\/$/, '');
}

/** One topic level of a prefix: no wildcard (`+`, `#`), nothing a program file cannot carry. */
const TOPIC_LEVEL = /^[A-Za-z0-9._~:@=-]{1,64}$/;
const PREFIX_MAX = 200;

/** A topic prefix: levels joined by `/`, none empty, no wildcard, not `$`-reserved. */
export function checkTopicPrefix(value: string): string {
  if (value.length > PREFIX_MAX) throw new MqttNameError(`is longer than ${PREFIX_MAX} characters`);
  const levels = value.split('/');
  if (levels.some((level) => level === '')) throw new MqttNameError('has an empty topic level (a leading, trailing or double /)');
  if (/[+#]/.test(value)) throw new MqttNameError('must not hold the wildcards + or #');
  if (!levels.every((level) => TOPIC_LEVEL.test(level))) throw new MqttNameError('levels must be letters, digits, . _ ~ : @ = - (at most 64 each)');
  return value;
}

/** One topic level from a Juju name: a unit's `app/0` becomes `app-0`; anything else becomes `_`. */
function topicLevel(name: string): string {
  return name.replace(/\//g, '-').replace(/[^A-Za-z0-9._~:@=-]/g, '_').slice(0, 64) || '_';
}

/** mqtt-topic-prefix's default: `testflinger/<model>/<unit>`, the unit's `/` made topic-safe. */
export function defaultTopicPrefix(model: string, unit: string): string {
  return ['testflinger', topicLevel(model), topicLevel(unit)].join('/');
}

/** The topics of one agent (its agent_id is one safe level: src/agent/names.ts). */
export function agentTopics(prefix: string, agentId: string) {
  const base = `${prefix}/${agentId}`;
  return { status: `${base}/status`, lastJob: `${base}/last_job`, log: `${base}/log`, submit: `${base}/submit`, submitStatus: `${base}/submit_status` };
}
export type AgentTopics = ReturnType<typeof agentTopics>;

/** The unit's summary, published by the charm. */
export function hostTopic(prefix: string): string {
  return `${prefix}/host`;
}

export interface MqttCredentials {
  username: string;
  password: string;
}

/** The credentials file the charm writes (JSON, padded with spaces) and the agent reads. */
export function parseCredentials(text: string): MqttCredentials | undefined {
  if (text.trim() === '') return undefined;
  const doc = JSON.parse(text) as Partial<MqttCredentials>;
  if (typeof doc.username !== 'string' || typeof doc.password !== 'string') throw new MqttNameError('the credentials file holds no username and password');
  return { username: doc.username, password: doc.password };
}
