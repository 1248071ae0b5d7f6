/**
 * The charm's MQTT options (mqtt-broker, mqtt-credentials-secret, mqtt-topic-prefix,
 * mqtt-submit) and what they become on the host: the agents' environment and the credentials
 * file. The password reaches an agent the way the refresh token does: a root-only file whose
 * descriptor the agent's root wrapper opens (docs/security.md); never argv, the program file's
 * environment, a log or a file a job can read. With mqtt-broker empty nothing here changes the
 * host: no environment, no file, no option on the agent's command line.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { checkBrokerUrl, checkTopicPrefix, defaultTopicPrefix, MqttNameError, type MqttCredentials } from '../agent/mqtt/topics';
import { MQTT_BROKER_ENV, MQTT_SUBMIT_ENV, MQTT_TOPIC_PREFIX_ENV } from '../common/contract';
import { readJsonFile, writeFileAtomic } from '../common/fsutil';
import type { FileOwner } from '../common/privileges';
import { writeHandedFile } from './auth';
import type { HostPaths } from './paths';

/** An empty value, or one that passes `check` (its refusal becomes the option's issue). */
function emptyOr(check: (value: string) => string) {
  return (value: string, ctx: z.RefinementCtx): string => {
    if (value === '') return '';
    try {
      return check(value);
    } catch (error) {
      if (!(error instanceof MqttNameError)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message });
      return z.NEVER;
    }
  };
}

/** The options' schema, merged into the charm's (config.ts); mqtt-credentials-secret is with the other secret there. */
export const mqttConfigShape = {
  'mqtt-broker': z.string().trim().default('').transform(emptyOr(checkBrokerUrl)),
  'mqtt-topic-prefix': z.string().trim().default('').transform(emptyOr(checkTopicPrefix)),
  'mqtt-submit': z.boolean().default(false),
};

interface MqttOptions {
  'mqtt-broker': string;
  'mqtt-credentials-secret': string;
  'mqtt-topic-prefix': string;
  'mqtt-submit': boolean;
}

/** Options that mean nothing without a broker are refused rather than silently ignored. */
export function mqttConfigIssues(config: MqttOptions): { option: keyof MqttOptions; message: string }[] {
  if (config['mqtt-broker']) return [];
  const needBroker = (['mqtt-credentials-secret', 'mqtt-topic-prefix', 'mqtt-submit'] as const).filter((option) => config[option]);
  return needBroker.map((option) => ({ option, message: 'needs mqtt-broker' }));
}

/** The config with mqtt-topic-prefix's default filled in: `testflinger/<model>/<unit>`. */
export function withDefaultTopicPrefix<C extends MqttOptions>(config: C, model: string, unit: string): C {
  if (!config['mqtt-broker'] || config['mqtt-topic-prefix']) return config;
  return { ...config, 'mqtt-topic-prefix': defaultTopicPrefix(model, unit) };
}

/** The agents' environment for MQTT: none when it is off. */
export function mqttAgentEnv(config: MqttOptions): Record<string, string> {
  if (!config['mqtt-broker']) return {};
  return {
    [MQTT_BROKER_ENV]: config['mqtt-broker'],
    [MQTT_TOPIC_PREFIX_ENV]: config['mqtt-topic-prefix'],
    ...(config['mqtt-submit'] ? { [MQTT_SUBMIT_ENV]: 'on' } : {}),
  };
}

/** Beside the refresh token, in the root-owned /var/lib/testflinger-agent. */
export function mqttCredentialsFile(paths: HostPaths): string {
  return path.join(path.dirname(paths.tokenFile), 'mqtt_credentials');
}

/** `--mqtt-credentials-file <file>` for the agent's command line, when MQTT is on. */
export function mqttCredentialsOption(config: MqttOptions, paths: HostPaths): string | undefined {
  return config['mqtt-broker'] ? mqttCredentialsFile(paths) : undefined;
}

const secretContent = z.object({
  username: z.string().min(1).max(256).regex(/^[^\u0000-\u001f\u007f]+$/, 'must be one line of printable characters'),
  password: z.string().min(1).max(1024).regex(/^[^\u0000]+$/, 'must not hold a NUL byte'),
});

/** `username` and `password` from the Juju secret; an error names the key, never the value. */
export function credentialsFromMqttSecret(content: Readonly<Record<string, string>>): MqttCredentials {
  const parsed = secretContent.safeParse({ username: content['username'], password: content['password'] });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new Error(`the secret's ${String(issue?.path[0] ?? 'content')} ${issue?.code === 'invalid_type' ? 'is missing' : (issue?.message ?? 'is invalid')}`);
}

/** What the charm remembers between hooks: which secret the file holds, and why it could not be read. */
interface MqttCharmState {
  source: string | null;
  problem: string | null;
}

function stateFile(paths: HostPaths): string {
  return path.join(paths.stateDir, 'mqtt.json');
}

export function loadMqttState(paths: HostPaths): MqttCharmState {
  return readJsonFile<MqttCharmState>(stateFile(paths), { source: null, problem: null });
}

function saveMqttState(paths: HostPaths, state: MqttCharmState): void {
  writeFileAtomic(stateFile(paths), `${JSON.stringify(state)}\n`, 0o600);
}

export interface CredentialsDeps {
  paths: HostPaths;
  /** The secret's content (a hook-tool call). */
  getSecret: (id: string, refresh: boolean) => Promise<Record<string, string>>;
  /** root on a unit (the file is root's alone); none in a sandbox. */
  owner: FileOwner | undefined;
}

/**
 * Keeps the credentials file the agents read: blank without a secret, the secret's username and
 * password with one; written before the agents start (their wrapper opens it), rewritten in place
 * when the secret changes. Returns the problem to show (blocked, naming the option), or null.
 */
export async function ensureMqttCredentials(config: MqttOptions, deps: CredentialsDeps, force: boolean): Promise<string | null> {
  const { paths } = deps;
  if (!config['mqtt-broker']) {
    // MQTT turned off: no password stays on the host.
    for (const file of [mqttCredentialsFile(paths), stateFile(paths)]) fs.rmSync(file, { force: true });
    return null;
  }
  const secretId = config['mqtt-credentials-secret'];
  const state = loadMqttState(paths);
  const source = secretId || 'anonymous';
  if (!force && state.source === source && state.problem === null && fs.existsSync(mqttCredentialsFile(paths))) return null;
  let next: MqttCharmState;
  try {
    const credentials = secretId ? credentialsFromMqttSecret(await deps.getSecret(secretId, force)) : undefined;
    writeHandedFile(mqttCredentialsFile(paths), credentials ? JSON.stringify(credentials) : '', 'the MQTT credentials', deps.owner);
    next = { source, problem: null };
  } catch (error) {
    next = { source: state.source, problem: `mqtt-credentials-secret: ${(error as Error).message}` };
  }
  saveMqttState(paths, next);
  return next.problem;
}
