/**
 * multi: one job across several devices, as upstream's connector of that name. Provision submits
 * the job's `provision_data.jobs` to the Testflinger server as child jobs (each told to stop in
 * its allocate phase and to follow this job), waits until every child's device is allocated, and
 * writes job_list.json with each child's device_info. The test phase gets DEVICE_IP_1..n from it;
 * cleanup cancels the children, which ends their hold on the devices.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { deviceConfigSchema, describeIssues, type DeviceConfig } from '../../config';
import { ConnectorError, JobError } from '../../errors';
import type { PhaseContext, PhaseFn } from '../../phases';
import { quoted } from '../../../common/text';
import { sshHostSchema } from '../../validate';
import type { DeviceType } from '../types';
import { serialConsoleKeys, testWithSerialLog } from '../../serial';
import { AgentToken } from './credentials';
import { jobIdSchema, TestflingerServer } from './server';

/** Upstream's default allocation_timeout: two hours. */
const DEFAULT_ALLOCATION_TIMEOUT_S = 2 * 3600;
/** What the test phase reads: upstream's file name and shape. */
export const JOB_LIST_FILE = 'job_list.json';
/** Ours: every child created so far, so cleanup cancels them even when provision was killed. */
export const CHILDREN_FILE = 'multi-children.json';
const OVER = ['cancelled', 'complete', 'completed'];

export const multiConfigSchema = deviceConfigSchema.extend({
  /** multi coordinates other devices: it has no device of its own. */
  device_ip: sshHostSchema.optional(),
  testflinger_server: z.string().regex(/^https?:\/\/\S+$/, 'the Testflinger server URL for multi-device connectors must start with http or https'),
  /** The serial console logged during the test phase, as upstream's multi does. */
  ...serialConsoleKeys,
  /** Ours: how often the children's states are read (upstream: 10 s). */
  multi_poll_seconds: z.number().positive().default(10),
}) as unknown as z.ZodType<DeviceConfig & { testflinger_server: string; multi_poll_seconds: number }, z.ZodTypeDef, unknown>;

const multiJobSchema = z
  .object({
    job_id: jobIdSchema,
    allocation_timeout: z.number().positive().default(DEFAULT_ALLOCATION_TIMEOUT_S),
    provision_data: z.object({ jobs: z.array(z.unknown()).min(1, "You must specify a list of 'jobs' in the 'provision_data' section of your job.") }).passthrough(),
  })
  .passthrough();

interface Multi {
  ctx: PhaseContext;
  server: TestflingerServer;
  pollSeconds: number;
  children: string[];
}

function multiOf(ctx: PhaseContext): Multi {
  const config = multiConfigSchema.parse(ctx.device);
  return { ctx, server: new TestflingerServer(config.testflinger_server, AgentToken.fromEnv()), pollSeconds: config.multi_poll_seconds, children: [] };
}

async function cancelAll(multi: Multi, jobs: readonly string[]): Promise<void> {
  for (const id of jobs) {
    try {
      await multi.server.cancel(id);
      multi.ctx.print(`cancelled child job ${id}`);
    } catch (error) {
      multi.ctx.print(`Unable to cancel job ${id}: ${(error as Error).message}`);
    }
  }
}

/** Cancels every child, then fails with `message`. */
async function abandon(multi: Multi, message: string): Promise<never> {
  await cancelAll(multi, multi.children);
  throw new ConnectorError(message);
}

async function createChildren(multi: Multi, parentId: string, jobs: readonly unknown[]): Promise<void> {
  for (const job of jobs) {
    if (typeof job !== 'object' || job === null || Array.isArray(job)) {
      multi.ctx.print(`Job is not a dict: ${quoted(job)}`);
      continue;
    }
    let id: string;
    try {
      id = await multi.server.submitJob({ ...job, allocate_data: { allocate: true }, parent_job_id: parentId });
    } catch (error) {
      return abandon(multi, `Unable to create job: ${(error as Error).message}`);
    }
    multi.children.push(id);
    fs.writeFileSync(path.join(multi.ctx.runDir, CHILDREN_FILE), `${JSON.stringify(multi.children)}\n`);
    multi.ctx.print(`Created job ${id}`);
  }
}

/** Waits (bounded by allocation_timeout) until every child is allocated; the parent ending stops it. */
async function awaitAllocation(multi: Multi, parentId: string, timeoutS: number): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  const waiting = new Set(multi.children);
  while (waiting.size > 0) {
    await multi.ctx.sleep(multi.pollSeconds * 1000);
    const parent = (await multi.server.result(parentId))?.job_state;
    if (parent && OVER.includes(parent)) await abandon(multi, 'Job cancelled or completed');
    for (const id of [...waiting]) {
      const state = (await multi.server.result(id))?.job_state;
      if (state === 'allocated') {
        waiting.delete(id);
        multi.ctx.print(`job ${id} allocated its device`);
      } else if (state && OVER.includes(state)) {
        await abandon(multi, `Unable to allocate all devices: job ${id} is ${state} without having allocated a device`);
      }
    }
    if (waiting.size > 0 && Date.now() > deadline) await abandon(multi, `Timed out waiting for devices to allocate: ${[...waiting].join(', ')} not allocated within ${timeoutS}s`);
  }
}

async function writeJobList(multi: Multi): Promise<void> {
  const list = [];
  for (const id of multi.children) list.push({ job_id: id, device_info: (await multi.server.result(id))?.device_info ?? null });
  fs.writeFileSync(path.join(multi.ctx.runDir, JOB_LIST_FILE), JSON.stringify(list));
}

const provision: PhaseFn = async (ctx) => {
  const parsed = multiJobSchema.safeParse(ctx.job);
  if (!parsed.success) throw new JobError(describeIssues('testflinger.json', parsed.error));
  const multi = multiOf(ctx);
  ctx.print('Creating test jobs');
  await createChildren(multi, parsed.data.job_id, parsed.data.provision_data.jobs);
  if (multi.children.length === 0) throw new JobError('none of provision_data.jobs is a job (an object)');
  await awaitAllocation(multi, parsed.data.job_id, parsed.data.allocation_timeout);
  await writeJobList(multi);
  return 0;
};

function readJsonList(ctx: PhaseContext, name: string): unknown[] {
  try {
    const list: unknown = JSON.parse(fs.readFileSync(path.join(ctx.runDir, name), 'utf8'));
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

/** DEVICE_IP_<n>: the device_ip of the n-th child's device, as upstream puts them in the test environment. */
function deviceIps(ctx: PhaseContext): Record<string, string> {
  const list = readJsonList(ctx, JOB_LIST_FILE);
  if (list.length === 0) ctx.print(`Unable to find multi-job data file, ${JOB_LIST_FILE} not found`);
  return Object.fromEntries(
    list.map((entry, i) => {
      const ip = (entry as { device_info?: { device_ip?: unknown } } | null)?.device_info?.device_ip;
      return [`DEVICE_IP_${i + 1}`, typeof ip === 'string' && !ip.includes('\0') ? ip : ''];
    }),
  );
}

const test: PhaseFn = (ctx) => testWithSerialLog({ ...ctx, device: { ...ctx.device, env: { ...ctx.device.env, ...deviceIps(ctx) } } });

/** Cancels every child job, those of job_list.json and any created by a provision that did not finish. */
const cleanup: PhaseFn = async (ctx) => {
  const multi = multiOf(ctx);
  const fromList = readJsonList(ctx, JOB_LIST_FILE).map((entry) => (entry as { job_id?: unknown } | null)?.job_id);
  const ids = new Set([...fromList, ...readJsonList(ctx, CHILDREN_FILE)].filter((id): id is string => jobIdSchema.safeParse(id).success));
  await cancelAll(multi, [...ids]);
  return 0;
};

export const multi: DeviceType = { name: 'multi', phases: { provision, test, cleanup }, configSchema: multiConfigSchema };
