/**
 * The OEM recovery flow upstream's oemscript connectors run: bring the device to a fresh boot,
 * put the job's image on its recovery partition and restore from it, wait for the restored
 * system to come back and finish installing, and check that it is a new system.
 */
import { ConnectorError } from '../../errors';
import { describeTarget, testUsername, writeDeviceInfo, type PhaseContext } from '../../phases';
import { agentPublicKey, sshRun } from '../../ssh';
import { copyToDevice, pollUntil, recoveryFailed, runCommand, runOnDevice, shellWords } from '../../steps';
import { quoted } from '../../../common/text';
import type { SshUser } from '../../validate';
import { oemScriptConfig, oemScriptProvision, type OemScriptConfig } from './config';
import { copyKeyWithPassword, jobPassword } from './password-login';
import { OLD_SYSTEM_MARKER, RECOVERY_DIR, RECOVERY_SCRIPT, type RestoreMethod } from './recovery-script';

/** Downloading and writing an image may take long; upstream allows 90 minutes. */
const RECOVERY_SCRIPT_TIMEOUT_MS = 90 * 60_000;
const REBOOT_SCRIPT_TIMEOUT_MS = 120_000;

interface Run {
  ctx: PhaseContext;
  config: OemScriptConfig;
  user: SshUser;
  /** The job's test_password (upstream's default: ubuntu), for a device that refuses the key. */
  password: string;
  /** How the last password login failed, for the report when the device never answers. */
  lastRefusal?: string;
}

async function takesKey(run: Run): Promise<boolean> {
  return (await sshRun(run.ctx.device, run.user, 'true', undefined, 60_000)).exitCode === 0;
}

/**
 * As upstream's check (its ssh-copy-id through sshpass): the device answers when it takes the
 * agents' key, or takes the job's password, with which the key is then installed.
 */
async function answers(run: Run): Promise<boolean> {
  if (await takesKey(run)) return true;
  const copied = await copyKeyWithPassword(run.ctx, run.user, run.password);
  if (copied.exitCode !== 0) {
    run.lastRefusal = copied.output.trim();
    return false;
  }
  run.ctx.print(`${describeTarget(run.ctx, run.user)} refused the agents' key and took the job's password (sshpass): the key is installed there now`);
  return true;
}

/** Waits (at most oem_boot_wait_seconds) until the device answers; upstream's "Failed to boot test image!" otherwise. */
async function awaitBoot(run: Run): Promise<void> {
  const { config } = run;
  const up = await pollUntil(run.ctx, () => answers(run), (answered) => answered, { seconds: config.oem_boot_wait_seconds, everySeconds: config.oem_poll_seconds });
  if (!up.done) throw new ConnectorError(`${describeTarget(run.ctx, run.user)} answered neither to the agents' key nor to the job's password within ${config.oem_boot_wait_seconds}s: ${quoted(run.lastRefusal ?? '')}`);
  run.ctx.print(`${describeTarget(run.ctx, run.user)} answers over SSH`);
}

/** Waits until the device stops answering (it went down), then until it answers again. */
async function awaitReboot(run: Run, what: string): Promise<void> {
  const { config } = run;
  const down = await pollUntil(run.ctx, () => takesKey(run), (up) => !up, { seconds: config.oem_shutdown_wait_seconds, everySeconds: Math.min(1, config.oem_poll_seconds) });
  if (!down.done) throw new ConnectorError(`${describeTarget(run.ctx, run.user)} did not go down for ${what} within ${config.oem_shutdown_wait_seconds}s`);
  run.ctx.print(`${describeTarget(run.ctx, run.user)} went down for ${what}`);
  await awaitBoot(run);
}

/** Upstream's hard reset: each reboot_script command run here, split on spaces, no shell. */
async function hardReset(run: Run): Promise<void> {
  if (run.config.reboot_script.length === 0) throw recoveryFailed(`${describeTarget(run.ctx, run.user)} does not answer and the device config has no reboot_script`);
  for (const command of run.config.reboot_script) {
    run.ctx.print(`running reboot_script command ${quoted(command)}`);
    const result = await runCommand(command.split(/\s+/), { timeoutMs: REBOOT_SCRIPT_TIMEOUT_MS });
    if (result.exitCode !== 0) throw recoveryFailed(`reboot_script command ${quoted(command)} failed (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
  }
}

/** As upstream: a device that answers is rebooted first; one that does not is hard reset. */
async function freshBoot(run: Run): Promise<void> {
  if (await answers(run)) {
    run.ctx.print('rebooting the device before provisioning');
    await sshRun(run.ctx.device, run.user, `nohup sudo sh -c ${shellWords(['sleep 2; reboot'])} >/dev/null 2>&1 &`, undefined, 60_000);
    return awaitReboot(run, 'the reboot');
  }
  await hardReset(run);
  await awaitBoot(run);
}

async function runRecoveryScript(run: Run, url: string, method: RestoreMethod): Promise<void> {
  const script = `${RECOVERY_DIR}/oem-recovery.sh`;
  const key = `${RECOVERY_DIR}/authorized_keys`;
  await runOnDevice(run.ctx, run.user, ['mkdir', '-p', RECOVERY_DIR]);
  await copyToDevice(run.ctx, run.user, RECOVERY_SCRIPT, script, '0755');
  await copyToDevice(run.ctx, run.user, agentPublicKey('the restored system'), key);
  run.ctx.print(`running the recovery script (${method}) with ${quoted(url)}`);
  const result = await sshRun(run.ctx.device, run.user, shellWords(['sh', script, url, method, key]), undefined, RECOVERY_SCRIPT_TIMEOUT_MS);
  for (const line of result.output.trimEnd().split('\n')) run.ctx.print(`device: ${line}`);
  if (result.exitCode !== 0) throw new ConnectorError(`the recovery script failed on ${describeTarget(run.ctx, run.user)} (exit ${result.exitCode})`);
}

/** The installer (ubiquity) runs on after the first boot; upstream waits until it is no longer active. */
async function awaitInstaller(run: Run): Promise<void> {
  const state = async () => (await sshRun(run.ctx.device, run.user, shellWords(['systemctl', 'is-active', 'ubiquity']), undefined, 60_000)).output.trim();
  const done = await pollUntil(run.ctx, state, (s) => s !== 'active' && s !== 'activating', { seconds: run.config.oem_boot_wait_seconds, everySeconds: run.config.oem_poll_seconds });
  if (!done.done) throw new ConnectorError(`the installer on ${describeTarget(run.ctx, run.user)} was still running after ${run.config.oem_boot_wait_seconds}s`);
}

/** A restore replaces the test user's home: the marker left there must be gone. */
async function checkNewSystem(run: Run): Promise<void> {
  const result = await sshRun(run.ctx.device, run.user, shellWords(['test', '!', '-e', OLD_SYSTEM_MARKER]), undefined, 60_000);
  if (result.exitCode !== 0) throw new ConnectorError(`${describeTarget(run.ctx, run.user)} came back with the system it had before the restore (${OLD_SYSTEM_MARKER} is still in its home): the image was not installed`);
  run.ctx.print(`${describeTarget(run.ctx, run.user)} runs the restored image`);
}

/** The provision phase of an OEM script device type whose restore method `methodFor` picks from the image URL. */
export function oemScriptProvisionPhase(methodFor: (url: string) => RestoreMethod) {
  return async (ctx: PhaseContext): Promise<number> => {
    const { url } = oemScriptProvision(ctx.job);
    const run: Run = { ctx, config: oemScriptConfig(ctx.device), user: testUsername(ctx), password: jobPassword(ctx.job) };
    await freshBoot(run);
    await runRecoveryScript(run, url, methodFor(url));
    await awaitReboot(run, 'the restore');
    await awaitInstaller(run);
    await checkNewSystem(run);
    writeDeviceInfo(ctx);
    return 0;
  };
}
