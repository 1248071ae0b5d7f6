/**
 * Power and boot: the hard reset (reboot_script), the reboot of the control host and the SDWire
 * before provisioning, and the wait until the test image has booted.
 */
import type { PhaseContext } from '../../phases';
import { ConnectorError } from '../../errors';
import { recoveryFailed, runCommand } from '../../steps';
import { quoted } from '../../../common/text';
import type { SshUser } from '../../validate';
import { copyAgentKey } from '../controlhost/copy-id';
import type { MuxpiConfig } from './config';
import type { ControlHost } from './control';
import { ProvisioningError } from './errors';

const REBOOT_SCRIPT_TIMEOUT_MS = 120_000;
const CONTROL_REBOOT_SCRIPT_TIMEOUT_MS = 60_000;
const CONTROL_REBOOT_POLL_SECONDS = 10;
const BOOT_URL_TIMEOUT_MS = 5_000;

/** Runs each command on this host, split on spaces (no shell); the first failure is returned. */
async function runScript(ctx: PhaseContext, commands: readonly string[], timeoutMs: number): Promise<string | undefined> {
  for (const command of commands) {
    ctx.print(`Running ${quoted(command)}`);
    const result = await runCommand(command.trim().split(/\s+/), { timeoutMs });
    if (result.exitCode !== 0) return `${quoted(command)} failed (${result.timedOut ? `timed out after ${timeoutMs / 1000}s` : `exit ${result.exitCode}`}): ${quoted(result.output.trim())}`;
  }
  return undefined;
}

/** The hard reset: reboot_script. A failing command means the device cannot be brought back: a recovery failure (exit 46), as upstream. */
export async function hardReset(ctx: PhaseContext, config: MuxpiConfig): Promise<void> {
  const failed = await runScript(ctx, config.reboot_script, REBOOT_SCRIPT_TIMEOUT_MS);
  if (failed !== undefined) throw recoveryFailed(`reboot_script: ${failed}`);
}

/**
 * Upstream reboots the control host and the device before provisioning through an SDWire that
 * no mux CLI drives, to start from a good state: control_host_reboot_script here, the hard reset,
 * then control_host_reboot_timeout seconds, and the control host must answer again.
 */
export async function rebootControlHostAndDevice(ctx: PhaseContext, config: MuxpiConfig, control: ControlHost): Promise<void> {
  const script = config.control_host_reboot_script ?? [];
  if (script.length === 0) {
    ctx.print('control_host_reboot_script not defined, skip rebooting control host');
    return;
  }
  ctx.print('Rebooting control host');
  const failed = await runScript(ctx, script, CONTROL_REBOOT_SCRIPT_TIMEOUT_MS);
  if (failed !== undefined) throw new ProvisioningError(`fail to reboot control host: control_host_reboot_script: ${failed}`);
  ctx.print('Rebooting DUT');
  await hardReset(ctx, config);
  const timeout = config.control_host_reboot_timeout;
  await ctx.sleep(timeout * 1000);
  // Up after the timeout, as a rule; else it gets that long again, looked at every 10 s.
  for (let n = 0; n < Math.floor(timeout / CONTROL_REBOOT_POLL_SECONDS); n++) {
    if (await control.succeeds('true')) return;
    ctx.print('Waiting for control host to become active...');
    await ctx.sleep(CONTROL_REBOOT_POLL_SECONDS * 1000);
  }
  await control.run('true');
}

export interface BootCheck {
  /** provision_data.boot_check_url with $DEVICE_IP replaced; without it, the check is an SSH login. */
  url?: string;
  user: SshUser;
  password: string;
}

/** Whether the URL answers 200 within 5 s. */
async function urlAnswers(ctx: PhaseContext, url: string): Promise<boolean> {
  ctx.print(`Checking ${quoted(url)} to confirm boot success ...`);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(BOOT_URL_TIMEOUT_MS), redirect: 'manual' });
    await response.arrayBuffer().catch(() => undefined);
    if (response.status === 200) return true;
    ctx.print(`Check returned ${response.status}, expecting 200`);
  } catch (error) {
    ctx.print(`Boot check failed with ${quoted(((error as Error).cause as Error | undefined)?.message ?? (error as Error).message)}`);
  }
  return false;
}

/** One login as the test user: with the agents' key, or else with the password through ssh-copy-id, which installs the key. */
async function logsIn(ctx: PhaseContext, check: BootCheck): Promise<boolean> {
  try {
    await copyAgentKey(ctx, check.user, check.password, 1);
    return true;
  } catch (error) {
    if (error instanceof ConnectorError) return false;
    throw error;
  }
}

/**
 * Waits until the test image has booted: every muxpi_boot_poll_seconds (the pause comes first),
 * the boot check URL answers 200, or the test user logs in. Not booted within
 * muxpi_boot_wait_seconds fails the job (exit 1), as upstream.
 */
export async function awaitTestImage(ctx: PhaseContext, config: MuxpiConfig, check: BootCheck): Promise<void> {
  ctx.print('Checking if test image booted.');
  const deadline = Date.now() + config.muxpi_boot_wait_seconds * 1000;
  let booted = false;
  // Bounded by the deadline; at most one check per poll interval.
  while (!booted && Date.now() < deadline) {
    await ctx.sleep(config.muxpi_boot_poll_seconds * 1000);
    booted = check.url !== undefined ? await urlAnswers(ctx, check.url) : await logsIn(ctx, check);
  }
  if (!booted) throw new ProvisioningError(`Failed to boot test image! (not booted within ${config.muxpi_boot_wait_seconds}s)`);
  ctx.print('Test image booted');
}
