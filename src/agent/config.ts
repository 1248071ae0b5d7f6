/** The agent's configuration file (testflinger-agent.conf), keys and defaults as upstream's. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { STATE_DIR_ENV } from '../common/contract';
import { AGENT_ID_PATTERN, AGENT_ID_RULE, QUEUE_NAME_PATTERN, QUEUE_NAME_RULE } from './names';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly file: string, readonly key: string, reason: string) {
    super(`${file}: ${key}: ${reason}`);
  }
}

export { PHASES, type Phase } from '../common/contract';

const command = z.string().default('');
const seconds = z.number().int().positive();

export const agentConfigSchema = z
  .object({
    agent_id: z.string().regex(AGENT_ID_PATTERN, AGENT_ID_RULE),
    identifier: z.string().optional(),
    location: z.string().optional(),
    polling_interval: z.number().positive().default(10),
    /** Optional here: the charm's testflinger-server reaches the agent as TESTFLINGER_SERVER. */
    server_address: z.string().min(1).optional(),
    execution_basedir: z.string().default('/tmp/testflinger/run'),
    logging_basedir: z.string().default('/tmp/testflinger/logs'),
    results_basedir: z.string().default('/tmp/testflinger/results'),
    logging_level: z.string().default('INFO'),
    logging_quiet: z.boolean().default(false),
    job_queues: z.array(z.string().regex(QUEUE_NAME_PATTERN, QUEUE_NAME_RULE)).min(1),
    setup_command: command,
    provision_command: command,
    firmware_update_command: command,
    test_command: command,
    allocate_command: command,
    reserve_command: command,
    cleanup_command: command,
    provision_type: z.string().optional(),
    global_timeout: seconds.optional(),
    output_timeout: seconds.optional(),
    advertised_queues: z.record(z.string(), z.string()).optional(),
    advertised_images: z.record(z.string(), z.record(z.string(), z.string())).optional(),
    output_bytes: z.number().int().positive().default(10 * 1024 * 1024),
    /**
     * Largest attachments archive the agent downloads (streamed to disk, never held in memory).
     * Attachments carry images and firmware, so the default is generous (2 GiB): the cap only
     * keeps a server from filling the agent's disk.
     */
    attachments_max_bytes: z.number().int().positive().default(2 * 1024 * 1024 * 1024),
  })
  .strict();

export type AgentConfig = z.output<typeof agentConfigSchema>;

/** Upstream's defaults: one directory for every agent of a host. */
export const UPSTREAM_BASEDIRS = { execution_basedir: '/tmp/testflinger/run', logging_basedir: '/tmp/testflinger/logs', results_basedir: '/tmp/testflinger/results' } as const;
export type BasedirKey = keyof typeof UPSTREAM_BASEDIRS;
export const BASEDIR_KEYS = Object.keys(UPSTREAM_BASEDIRS) as readonly BasedirKey[];
const STATE_SUBDIRS: Readonly<Record<BasedirKey, string>> = { execution_basedir: 'run', logging_basedir: 'logs', results_basedir: 'results' };

/**
 * The key's directory with a state dir: the conf's own, or `<stateDir>/<run|logs|results>` when
 * the conf names none or writes out upstream's shared default (which means "the default", and
 * one shared directory cannot serve one user per agent).
 */
export function stateDirBasedir(key: BasedirKey, value: unknown, stateDir: string): unknown {
  return value === undefined || value === UPSTREAM_BASEDIRS[key] ? path.join(stateDir, STATE_SUBDIRS[key]) : value;
}

function withStateDirDefaults(doc: Record<string, unknown>, stateDir: string | undefined): Record<string, unknown> {
  if (!stateDir) return doc;
  return { ...doc, ...Object.fromEntries(BASEDIR_KEYS.map((key) => [key, stateDirBasedir(key, doc[key], stateDir)])) };
}

/** The line the agent logs when its state dir holds what upstream shares in /tmp/testflinger; none without one. */
export function stateDirNote(config: Pick<AgentConfig, BasedirKey>, stateDir: string | undefined): string | undefined {
  if (!stateDir) return undefined;
  const moved = BASEDIR_KEYS.filter((key) => config[key] === stateDirBasedir(key, undefined, stateDir));
  if (moved.length === 0) return undefined;
  const pairs = moved.map((key) => `${key} ${UPSTREAM_BASEDIRS[key]} -> ${config[key]}`).join(', ');
  return `basedirs: upstream's shared defaults are this agent's own here (one user per agent): ${pairs}`;
}

/** Parses conf text; errors name the file and the first bad key. `stateDir`: see STATE_DIR_ENV. */
export function parseAgentConfig(text: string, file: string, stateDir?: string): AgentConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new ConfigError(file, '(yaml)', (error as Error).message.split('\n')[0] ?? 'not YAML');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConfigError(file, '(file)', 'not a YAML mapping');
  const result = agentConfigSchema.safeParse(withStateDirDefaults(doc as Record<string, unknown>, stateDir));
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue?.code === 'unrecognized_keys') throw new ConfigError(file, issue.keys.join(', '), 'unknown key');
    throw new ConfigError(file, issue?.path.join('.') || '(file)', issue?.message ?? 'invalid');
  }
  return result.data;
}

export function loadAgentConfig(file: string, stateDir: string | undefined = process.env[STATE_DIR_ENV]): AgentConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, '(file)', (error as Error).message);
  }
  return parseAgentConfig(text, file, stateDir);
}

/** A value without a scheme gets http://, as upstream does. */
export function serverUrl(address: string): string {
  const withScheme = /^https?:\/\//.test(address) ? address : `http://${address}`;
  return withScheme.replace(/\/+$/, '');
}
