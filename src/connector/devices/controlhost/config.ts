/**
 * The keys every control-host device type shares: where the control host is, the identity
 * fields sent with each provisioning request, and the timings of its REST API and log stream.
 */
import { z } from 'zod';
import { deviceConfigSchema, describeIssues, type DeviceConfig, type JobFile } from '../../config';
import { JobError, UsageError } from '../../errors';
import { serialConsoleKeys } from '../../serial';
import { controlHostHookKeys } from '../../controlhost-hooks';

/** Upstream's read timeout: the longest the control host may stay silent, unless the job sets provisioning_timeout. */
export const DEFAULT_READ_TIMEOUT_SECONDS = 90 * 60;

const commandList = z.array(z.string());

/** The shared keys; oem_autoinstall checks them only when its ISO route needs the control host. */
export const controlHostKeys = {
  /** Upstream requires both: they identify the agent in every provisioning request. */
  agent_name: z.string().min(1),
  /** The control host's place, its power cycle and the device's power (shared with the connector's hooks). */
  ...controlHostHookKeys,
  /** Sent to the control host as it is (upstream reads config["reboot_script"], so it must be set). */
  reboot_script: commandList,
  /** The device's serial console (a TCP console server), logged by control_host_iot while it provisions, and in every test phase. */
  ...serialConsoleKeys,
  /** Ours: the first pause before reconnecting to a dropped log stream (upstream: 2 s). */
  control_host_reconnect_seconds: z.number().positive().default(2),
  /** Ours: the longest pause between reconnects (upstream: 30 s). */
  control_host_reconnect_max_seconds: z.number().positive().default(30),
};

export const controlHostConfigSchema = deviceConfigSchema.extend(controlHostKeys);
export type ControlHostConfig = z.output<typeof controlHostConfigSchema>;

/** The control host's keys, for a type that checks them only when it needs the control host. */
export function controlHostConfig(device: DeviceConfig): ControlHostConfig {
  const parsed = controlHostConfigSchema.safeParse(device);
  if (!parsed.success) throw new UsageError(describeIssues('default.yaml', parsed.error));
  return parsed.data;
}

/** provisioning_timeout (seconds) replaces the read timeout for one job, as upstream. */
const timeoutSchema = z.object({ provisioning_timeout: z.number().positive().nullish() }).passthrough();

export function readTimeoutSeconds(job: JobFile): number {
  const parsed = timeoutSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(describeIssues('testflinger.json', parsed.error, ['provision_data']));
  return parsed.data.provisioning_timeout || DEFAULT_READ_TIMEOUT_SECONDS;
}

/** test_data's user and password, each with the default the type gives. */
export function jobCredentials(job: JobFile, defaults: { username: string; password: string }): { username: string; password: string; given: { username: boolean; password: boolean } } {
  const testData = (job.test_data ?? {}) as Record<string, unknown>;
  const password = typeof testData['test_password'] === 'string' ? testData['test_password'] : undefined;
  const username = job.test_data?.test_username;
  return { username: username ?? defaults.username, password: password ?? defaults.password, given: { username: username !== undefined, password: password !== undefined } };
}
