/**
 * Upstream's hooks around every device type's provision and test phases, for a device whose
 * default.yaml names a control_host (the connector applies them: ./connector.ts):
 *
 * - before provisioning, the control host is power cycled (when control_host_reboot_script is
 *   set and DISABLE_CONTROL_HOST_POWERCYCLE is not): POST /api/v1/system/poweroff, wait until it
 *   stops answering ping (then 10 s more to shut down), run the reboot script on this host (a PDU,
 *   say), and wait until GET /health answers. Where the REST API does not take the poweroff, the
 *   control host is checked on its SSH port instead and rebooted only when that is closed. Types
 *   that manage the device's power (DeviceType.managesDutPower) keep it off meanwhile. Then a
 *   best-effort POST /api/v1/system/setup/provisioning;
 * - before the shared test phase, a best-effort POST /api/v1/system/setup/test.
 *
 * A device without control_host hears nothing of it and sees no output.
 */
import * as net from 'node:net';
import { z } from 'zod';
import { describeIssues, type DeviceConfig } from './config';
import { ConnectorError, UsageError } from './errors';
import type { PhaseContext } from './phases';
import { runCommand } from './steps';
import { sshHostSchema } from './validate';
import { quoted } from '../common/text';
import { ControlHostApi, type Limits } from './devices/controlhost/client';

/** Upstream's fixed REST port of the control host. */
export const UPSTREAM_REST_PORT = 8000;

const commandList = z.array(z.string());

/** The default.yaml keys the hooks read; the control-host family's schema reuses them. */
export const controlHostHookKeys = {
  control_host: sshHostSchema,
  /** Ours: the control host's REST port (upstream's is always 8000). */
  control_host_rest_port: z.number().int().min(1).max(65535).default(UPSTREAM_REST_PORT),
  /** Run on this host to power the control host back on after its REST poweroff (each command split on spaces, no shell). */
  control_host_reboot_script: commandList.optional(),
  /** The device's power, switched off and on around the power cycle by the types that manage it. */
  poweron_script: commandList.nullish(),
  poweroff_script: commandList.nullish(),
  /** Ours: how long the control host may take to stop answering ping after its poweroff (upstream: 30 s). */
  control_host_offline_wait_seconds: z.number().nonnegative().default(30),
  /** Ours: how long its REST API may take to come back after the reboot script (upstream: 300 s). */
  control_host_ready_wait_seconds: z.number().nonnegative().default(300),
};

const controlHostHookSchema = z.object(controlHostHookKeys).passthrough();
export type ControlHostHookConfig = z.output<typeof controlHostHookSchema>;

/** http://host:port, with an IPv6 address in brackets. */
export function controlHostUrl(config: Pick<ControlHostHookConfig, 'control_host' | 'control_host_rest_port'>): string {
  const host = net.isIPv6(config.control_host.split('%')[0] ?? '') ? `[${config.control_host}]` : config.control_host;
  return `http://${host}:${config.control_host_rest_port}`;
}

export function controlHostApi(config: Pick<ControlHostHookConfig, 'control_host' | 'control_host_rest_port'>, secrets: readonly string[] = []): ControlHostApi {
  return new ControlHostApi(controlHostUrl(config), secrets);
}

/** The hooks' keys when default.yaml names a control host (as upstream, an empty one is none); a bad key is a usage error. */
function hookConfig(device: DeviceConfig): ControlHostHookConfig | undefined {
  const host = device['control_host'];
  if (host === undefined || host === null || host === '') return undefined;
  const parsed = controlHostHookSchema.safeParse(device);
  if (!parsed.success) throw new UsageError(describeIssues('default.yaml', parsed.error));
  return parsed.data;
}

/* The power cycle. */
const SCRIPT_COMMAND_TIMEOUT_MS = 60_000;
const SHUTDOWN_GRACE_MS = 10_000;
const POLL_MS = 2000;
const SSH_WAIT_SECONDS = 300;
/** Upstream's timeout of the poweroff and setup requests. */
const REQUEST_LIMITS: Limits = { headersSeconds: 10, readSeconds: 10 };

/** As upstream, a failing command is reported and the script goes on; each runs without a shell, split on spaces. */
async function runScript(ctx: PhaseContext, commands: readonly string[], what: string): Promise<void> {
  if (commands.length === 0) return;
  ctx.print(`Running ${what} script`);
  for (const command of commands) {
    const argv = command.trim().split(/\s+/).filter(Boolean);
    if (argv.length === 0) continue;
    ctx.print(`Executing: ${quoted(command)}`);
    const result = await runCommand(argv, { timeoutMs: SCRIPT_COMMAND_TIMEOUT_MS });
    if (result.timedOut) ctx.print(`Command timed out after 60s: ${quoted(command)}`);
    else if (result.exitCode !== 0) ctx.print(`Command failed: ${quoted(command)} (exit code: ${result.exitCode}): ${quoted(result.output.trim())}`);
  }
}

/** Whether the host answers ping; a host without ping counts as down (the 10 s grace still applies). */
async function answersPing(ctx: PhaseContext, host: string): Promise<boolean> {
  const result = await runCommand(['ping', '-c', '1', '-W', '3', '--', host], { timeoutMs: 10_000 });
  if (result.exitCode === 127) ctx.print(`cannot run ping (${quoted(result.output.trim())}): not waiting for the control host to stop answering`);
  return result.exitCode === 0;
}

function sshPortOpen(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: 22, timeout: 3000 });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}

/** Polls `check` every 2 s until it says `wanted`, at most `seconds`; whether it did. */
async function waitFor(ctx: PhaseContext, check: () => Promise<boolean>, wanted: boolean, seconds: number): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if ((await check()) === wanted) return true;
    if (Date.now() >= deadline) return false;
    await ctx.sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
}

/** Both DUT scripts, or (with a warning) neither: half of them would leave the device off. */
function dutScripts(ctx: PhaseContext, config: ControlHostHookConfig, manageDutPower: boolean): { off: string[]; on: string[] } {
  if (!manageDutPower) return { off: [], on: [] };
  const off = config.poweroff_script ?? [];
  const on = config.poweron_script ?? [];
  if (off.length > 0 && on.length > 0) return { off, on };
  ctx.print('poweroff_script/poweron_script not configured: the DUT may stay powered while the control host reboots.');
  return { off: [], on: [] };
}

/** Without the REST API: a control host whose SSH port is open is left alone; else it is rebooted and waited for. */
async function sshFallback(ctx: PhaseContext, config: ControlHostHookConfig, reboot: readonly string[]): Promise<void> {
  if (await sshPortOpen(config.control_host)) return;
  await runScript(ctx, reboot, 'control host reboot');
  ctx.print(`Waiting for control host ${config.control_host} to come back online (timeout: ${SSH_WAIT_SECONDS} seconds)`);
  if (!(await waitFor(ctx, () => sshPortOpen(config.control_host), true, SSH_WAIT_SECONDS))) {
    ctx.print(`Control host ${config.control_host} is not available or the SSH server is not running after ${SSH_WAIT_SECONDS} seconds`);
  }
}

export async function powerCycleControlHost(ctx: PhaseContext, config: ControlHostHookConfig, manageDutPower: boolean): Promise<void> {
  if (process.env['DISABLE_CONTROL_HOST_POWERCYCLE']) {
    ctx.print('Skipping control host power cycle (DISABLE_CONTROL_HOST_POWERCYCLE is set).');
    return;
  }
  const reboot = config.control_host_reboot_script ?? [];
  if (reboot.length === 0) {
    ctx.print('No control_host_reboot_script configured, cannot reboot.');
    return;
  }
  const dut = dutScripts(ctx, config, manageDutPower);
  const api = controlHostApi(config);
  try {
    await runScript(ctx, dut.off, 'DUT power-off');
    ctx.print('Attempt to power cycle the control host.');
    try {
      await (await api.request('POST', '/api/v1/system/poweroff', { limits: REQUEST_LIMITS })).text();
    } catch (error) {
      ctx.print(`The REST API is not available on ${config.control_host} (${(error as Error).message}), falling back to SSH-based control host check`);
      return await sshFallback(ctx, config, reboot);
    }
    if (await waitFor(ctx, () => answersPing(ctx, config.control_host), false, config.control_host_offline_wait_seconds)) await ctx.sleep(SHUTDOWN_GRACE_MS);
    await runScript(ctx, reboot, 'control host reboot');
    ctx.print(`Waiting for the REST API on control host ${config.control_host}`);
    const healthy = async () => api.request('GET', '/health', { limits: { headersSeconds: 3, readSeconds: 3 } }).then((r) => r.text().then(() => true), () => false);
    if (!(await waitFor(ctx, healthy, true, config.control_host_ready_wait_seconds))) {
      throw new ConnectorError(`the control host's REST API did not come back within ${config.control_host_ready_wait_seconds}s after its power cycle`);
    }
  } finally {
    await runScript(ctx, dut.on, 'DUT power-on');
  }
}

/** Upstream's best-effort request before provisioning and before the test phase. */
const SETUP_ENDPOINT = (phase: string) => `/api/v1/system/setup/${phase}`;

/** Asks the control host to prepare for a phase; as upstream, a failure is noted and never fatal. */
export async function setupControlHost(ctx: PhaseContext, config: ControlHostHookConfig, phase: 'provisioning' | 'test'): Promise<void> {
  try {
    await (await controlHostApi(config).request('POST', SETUP_ENDPOINT(phase), { limits: REQUEST_LIMITS })).text();
  } catch (error) {
    ctx.print(`could not set up ${phase} on the control host (ignored): ${(error as Error).message}`);
  }
}

/** Upstream's pre-provision hook: the control host's power cycle, then its setup for provisioning. */
export async function preProvisionHook(ctx: PhaseContext, manageDutPower: boolean): Promise<void> {
  const config = hookConfig(ctx.device);
  if (!config) return;
  await powerCycleControlHost(ctx, config, manageDutPower);
  await setupControlHost(ctx, config, 'provisioning');
}

/** Upstream's pre-test hook: the control host's setup for the test phase. */
export async function preTestHook(ctx: PhaseContext): Promise<void> {
  const config = hookConfig(ctx.device);
  if (config) await setupControlHost(ctx, config, 'test');
}
