/**
 * Upstream's pre-provision hook for connectors with a control host: the control host is power
 * cycled before each provisioning, when the device config has control_host_reboot_script.
 * Through its REST API: POST /api/v1/system/poweroff, wait until it stops answering ping (up to
 * 30 s, then 10 s more to shut down), run the reboot script on this host (a PDU, say), and wait
 * up to 300 s until GET /health answers. Where the REST API does not take the poweroff, the
 * control host is checked on its SSH port instead and rebooted only when that is closed.
 * Types that opt in (control_host_iot) keep the device powered off meanwhile.
 */
import * as net from 'node:net';
import type { PhaseContext } from '../../phases';
import { runCommand } from '../../steps';
import { quoted } from '../../../common/text';
import { ConnectorError } from '../../errors';
import { controlHostApi } from './run';
import type { ControlHostConfig } from './config';

const SCRIPT_COMMAND_TIMEOUT_MS = 60_000;
const SHUTDOWN_GRACE_MS = 10_000;
const POLL_MS = 2000;
const SSH_WAIT_SECONDS = 300;
const QUICK: { headersSeconds: number; readSeconds: number } = { headersSeconds: 10, readSeconds: 10 };

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
function dutScripts(ctx: PhaseContext, config: ControlHostConfig, manageDutPower: boolean): { off: string[]; on: string[] } {
  if (!manageDutPower) return { off: [], on: [] };
  const off = config.poweroff_script ?? [];
  const on = config.poweron_script ?? [];
  if (off.length > 0 && on.length > 0) return { off, on };
  ctx.print('poweroff_script/poweron_script not configured: the DUT may stay powered while the control host reboots.');
  return { off: [], on: [] };
}

/** Without the REST API: a control host whose SSH port is open is left alone; else it is rebooted and waited for. */
async function sshFallback(ctx: PhaseContext, config: ControlHostConfig, reboot: readonly string[]): Promise<void> {
  if (await sshPortOpen(config.control_host)) return;
  await runScript(ctx, reboot, 'control host reboot');
  ctx.print(`Waiting for control host ${config.control_host} to come back online (timeout: ${SSH_WAIT_SECONDS} seconds)`);
  if (!(await waitFor(ctx, () => sshPortOpen(config.control_host), true, SSH_WAIT_SECONDS))) {
    ctx.print(`Control host ${config.control_host} is not available or the SSH server is not running after ${SSH_WAIT_SECONDS} seconds`);
  }
}

export async function powerCycleControlHost(ctx: PhaseContext, config: ControlHostConfig, manageDutPower: boolean): Promise<void> {
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
      await (await api.request('POST', '/api/v1/system/poweroff', { limits: QUICK })).text();
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
