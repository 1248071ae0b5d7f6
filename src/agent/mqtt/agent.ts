/**
 * The agent's MQTT side, started by main.ts when the charm set mqtt-broker: the link, the status
 * publisher AgentStatus tells of changes, the metrics of the link, and job submission when the
 * charm's mqtt-submit is on. Its settings come from the environment the charm sets (checked
 * again here); the credentials from the descriptor the root wrapper opens or, in a sandbox, the
 * file by path, read afresh at each connect and never logged.
 */
import * as fs from 'node:fs';
import { MQTT_BROKER_ENV, MQTT_CREDENTIALS_FD_ENV, MQTT_SUBMIT_ENV, MQTT_TOPIC_PREFIX_ENV } from '../../common/contract';
import { openRegularFile } from '../../common/fsutil';
import type { ServerApi } from '../api';
import type { AgentConfig } from '../config';
import type { Logger } from '../logger';
import type { AgentMetrics } from '../metrics';
import { MqttLink, type MqttLinkLimits } from './link';
import { MqttStatusPublisher } from './status';
import { MqttSubmitter, SUBMIT_MAX_PACKET_BYTES } from './submit';
import { agentTopics, checkBrokerUrl, checkTopicPrefix, parseCredentials, type MqttCredentials } from './topics';
import type { StatusWatcher } from '../status';

const CREDENTIALS_MAX_BYTES = 4096;

export interface AgentMqttOptions {
  env: NodeJS.ProcessEnv;
  config: AgentConfig;
  log: Logger;
  metrics: AgentMetrics;
  api: ServerApi;
  /** --mqtt-credentials-file: read by path when no descriptor was handed over (a sandbox). */
  credentialsFile?: string;
  limits?: MqttLinkLimits;
}

export interface AgentMqtt {
  watcher: StatusWatcher;
  link: MqttLink;
  /** Leaves the status `offline` (the agent stopped) and disconnects, bounded in time. */
  stop(): Promise<void>;
}

function descriptorOf(value: string | undefined): number | undefined {
  return value !== undefined && /^[0-9]{1,4}$/.test(value) ? Number(value) : undefined;
}

/** The credentials through the descriptor (read at offset 0: the charm rewrites the file in place), or the file. */
export function credentialsReader(fd: number | undefined, file: string | undefined): () => MqttCredentials | undefined {
  return () => {
    const buffer = Buffer.alloc(CREDENTIALS_MAX_BYTES);
    if (fd !== undefined) return parseCredentials(buffer.subarray(0, fs.readSync(fd, buffer, 0, buffer.length, 0)).toString('utf8'));
    if (!file || !fs.existsSync(file)) return undefined;
    const opened = openRegularFile(file, fs.constants.O_RDONLY).fd;
    try {
      return parseCredentials(buffer.subarray(0, fs.readSync(opened, buffer, 0, buffer.length, 0)).toString('utf8'));
    } finally {
      fs.closeSync(opened);
    }
  };
}

/** Starts publishing; undefined (with the reason logged) when the charm's settings do not hold. */
export function startAgentMqtt(options: AgentMqttOptions): AgentMqtt | undefined {
  const { env, config, log, metrics } = options;
  let url: string;
  let prefix: string;
  try {
    url = checkBrokerUrl(env[MQTT_BROKER_ENV] ?? '');
    prefix = checkTopicPrefix(env[MQTT_TOPIC_PREFIX_ENV] ?? '');
  } catch (error) {
    log.error(`mqtt: not started: ${MQTT_BROKER_ENV}/${MQTT_TOPIC_PREFIX_ENV}: ${(error as Error).message}`);
    return undefined;
  }
  const topics = agentTopics(prefix, config.agent_id);
  const credentials = credentialsReader(descriptorOf(env[MQTT_CREDENTIALS_FD_ENV]), options.credentialsFile);
  // The publisher only publishes once started, after the link exists.
  const publisher = new MqttStatusPublisher((topic, payload, retain) => link.publish(topic, payload, retain), topics, config.job_queues);
  const submit = env[MQTT_SUBMIT_ENV] === 'on';
  const settings = { url, credentials, will: { topic: topics.status, payload: publisher.willMessage() }, clientIdPrefix: `tf-${config.agent_id}` };
  const link = new MqttLink(submit ? { ...settings, maxIncomingBytes: SUBMIT_MAX_PACKET_BYTES } : settings, log, options.limits);
  metrics.trackMqtt(() => link.counts());
  link.start();
  publisher.announce();
  if (submit) new MqttSubmitter(link, topics, config.job_queues, options.api, log).start();
  log.info(`mqtt: publishing to ${url} under ${prefix}/${config.agent_id}${submit ? '; taking jobs from its submit topic (MQTT 5)' : ''}`);
  return { watcher: publisher, link, stop: () => link.stop(publisher.stoppedMessage()) };
}
