/**
 * control_host_iot: the control host flashes IoT images (Ubuntu Core, classic) onto the device
 * (ProvisioningIoT), following a preset or the job's own provision plan.
 */
import { z } from 'zod';
import { describeIssues, type JobFile } from '../../config';
import { JobError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { quoted } from '../../../common/text';
import { jobCredentials } from './config';
import { validateUrls } from './iot-parser';

export const IOT_METHOD = 'ProvisioningIoT';

const planSchema = z
  .object({
    /** Upstream writes the job's credentials into it, so it must be there. */
    config: z.object({ username: z.string().optional(), password: z.string().optional() }).passthrough(),
    run_stage: z.array(z.unknown()),
  })
  .passthrough();

export const iotProvisionSchema = z
  .object({
    url: z.string().optional(),
    urls: z.array(z.string()).optional(),
    preset: z.string().nullish(),
    preset_kwargs: z.record(z.string(), z.unknown()).nullish(),
    /** As upstream, an empty plan is no plan. */
    provision_plan: z.preprocess((plan) => (typeof plan === 'object' && plan !== null && Object.keys(plan).length === 0 ? undefined : plan), planSchema.optional()),
    ubuntu_sso_email: z.string().email().optional(),
    /** false: the device will not let the agent in over SSH, so the connector does not try. */
    agent_ssh_access: z.boolean().default(true),
    provisioning_timeout: z.number().positive().nullish(),
  })
  .passthrough();
export type IotProvision = z.output<typeof iotProvisionSchema>;

/** A stage that logs in first through console-conf needs an Ubuntu SSO account. */
function needsSsoEmail(plan: z.output<typeof planSchema>): boolean {
  return plan.run_stage.some((stage) => {
    const login = typeof stage === 'object' && stage !== null ? (stage as { initial_login?: unknown }).initial_login : undefined;
    return typeof login === 'object' && login !== null && (login as { method?: unknown }).method === 'console-conf';
  });
}

export function iotProvision(job: JobFile): IotProvision {
  const parsed = iotProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data: ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  const data = parsed.data;
  if (data.provision_plan && needsSsoEmail(data.provision_plan) && !data.ubuntu_sso_email) {
    throw new JobError('provision_data.ubuntu_sso_email is required when initial login using console-conf');
  }
  try {
    validateUrls(imageUrls(data));
  } catch (error) {
    throw new JobError(`provision_data: ${(error as Error).message}: ${quoted(imageUrls(data).join(' '))}`);
  }
  return data;
}

/** `url` wins over `urls`, as upstream. */
function imageUrls(data: IotProvision): string[] {
  return data.url ? [data.url] : (data.urls ?? []);
}

/** The request's kwargs as upstream builds them; the plan's credentials become the job's. */
export function iotRequest(ctx: PhaseContext, data: IotProvision): Record<string, unknown> {
  const plan = data.provision_plan;
  const creds = jobCredentials(ctx.job, { username: plan?.config.username ?? 'ubuntu', password: plan?.config.password ?? 'ubuntu' });
  const test = jobCredentials(ctx.job, { username: 'ubuntu', password: 'ubuntu' });
  if (creds.username !== test.username || creds.password !== test.password) {
    ctx.print('Provisioning is using a username different from what the test phase expects, which may prevent it from accessing the DUT later on.');
  }
  const username = data.ubuntu_sso_email ?? creds.username;
  const request: Record<string, unknown> = { username, password: creds.password, preset: data.preset ?? null, preset_kwargs: data.preset_kwargs ?? null };
  if (plan) request['custom_provision_plan'] = { ...plan, config: { ...plan.config, username, password: creds.password } };
  request['urls'] = imageUrls(data);
  return request;
}
