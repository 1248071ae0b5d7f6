/** The device config (default.yaml) and the job file (testflinger.json), validated on entry. */
import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { JobError, UsageError } from './errors';
import { quoted } from '../common/text';
import { envNameSchema, envValueSchema, sshHostSchema, sshPortSchema, sshUserSchema } from './validate';

const DEFAULT_TEST_USERNAME = 'ubuntu';

export const deviceConfigSchema = z
  .object({
    device_ip: sshHostSchema,
    agent_name: z.string().optional(),
    secure_id: z.string().optional(),
    /**
     * Our extension: the device's SSH port. Unset, ssh takes the port from the ssh config
     * (the charm's ssh-config option) or its default, 22.
     */
    ssh_port: sshPortSchema.optional(),
    test_username: sshUserSchema.default(DEFAULT_TEST_USERNAME),
    reboot_script: z.array(z.string()).optional(),
    env: z.record(envNameSchema, z.union([z.string(), z.number(), z.boolean()]).transform(String).pipe(envValueSchema)).default({}),
    /** How long provision keeps trying to reach a device over SSH. */
    provision_ssh_wait: z.number().positive().default(60),
    /** The longest reservation this device allows, in seconds. */
    reserve_timeout_max: z.number().int().positive().default(6 * 3600),
  })
  .passthrough();
export type DeviceConfig = z.output<typeof deviceConfigSchema>;

const testCmds = z.union([z.string(), z.array(z.string())]);

export const jobFileSchema = z
  .object({
    job_id: z.string().default(''),
    provision_data: z.record(z.string(), z.unknown()).nullish(),
    firmware_update_data: z.record(z.string(), z.unknown()).nullish(),
    test_data: z
      .object({ test_cmds: testCmds.optional(), test_username: sshUserSchema.optional(), env: z.record(envNameSchema, envValueSchema).optional() })
      .passthrough()
      .nullish(),
    allocate_data: z.record(z.string(), z.unknown()).nullish(),
    reserve_data: z
      .object({ ssh_keys: z.array(z.string()).default([]), timeout: z.union([z.number(), z.string()]).optional() })
      .passthrough()
      .nullish(),
  })
  .passthrough();
export type JobFile = z.output<typeof jobFileSchema>;

/** A key path as `a.b[2].c`; a key that is itself bad (an env name) is quoted, never raw. */
export function describePath(keys: readonly (string | number)[]): string {
  return keys.map((key, i) => (typeof key === 'number' ? `[${key}]` : `${i > 0 ? '.' : ''}${/^[A-Za-z0-9_-]+$/.test(key) ? key : quoted(key)}`)).join('');
}

/** "<file>: <key path>: <why>" for the first problem. */
function describeIssue(file: string, error: z.ZodError): string {
  const issue = error.issues[0];
  return `${file}: ${describePath(issue?.path ?? []) || '(file)'}: ${issue?.message ?? 'invalid'}`;
}

/** Every problem, one "<where>: <why>" each, joined with "; " (a layout is best fixed in one go). */
export function describeIssues(where: string, error: z.ZodError, prefix: readonly (string | number)[] = []): string {
  return error.issues.map((issue) => `${where}: ${describePath([...prefix, ...issue.path])}: ${issue.message}`).join('; ');
}

/** The device config is the operator's: a bad one is a usage error naming the file and key. */
export function loadDeviceConfig(file: string, schema: z.ZodType<DeviceConfig, z.ZodTypeDef, unknown> = deviceConfigSchema): DeviceConfig {
  let doc: unknown;
  try {
    doc = parseYaml(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read device config ${file}: ${(error as Error).message.split('\n')[0]}`);
  }
  const parsed = schema.safeParse(doc ?? {});
  if (!parsed.success) throw new UsageError(describeIssue(file, parsed.error));
  return parsed.data;
}

/** The job file is the submitter's: a bad one fails the job, never the device. */
export function loadJobFile(file: string): JobFile {
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new JobError(`cannot read job file ${file}: ${(error as Error).message.split('\n')[0]}`);
  }
  const parsed = jobFileSchema.safeParse(doc);
  if (!parsed.success) throw new JobError(describeIssue(file, parsed.error));
  return parsed.data;
}
