/**
 * Upstream's oemrecovery: make sure the device takes the agent's key (a password login with
 * sshpass; a device that refuses is power cycled), run the lab's recovery_cmds on it (they
 * start the restore from its recovery partition), then wait until the recovered system has
 * initialized and take it over again with the password.
 */
import { ConnectorError } from '../../errors';
import { describeTarget, writeDeviceInfo, type PhaseContext } from '../../phases';
import { sshRun } from '../../ssh';
import { quoted } from '../../../common/text';
import { hardReset } from '../sshboot/local';
import { waitUntil } from '../sshboot/wait';
import { copyIdWithPassword, testImageLogin, runWithPassword, type BoardRun } from '../sshboot/password';
import { oemRecoveryConfig, type OemRecoveryConfig } from './config';

const COPY_ID_TIMEOUT_MS = 60_000;
const RECOVERY_CMD_TIMEOUT_MS = 600_000;
const CHECK_TIMEOUT_MS = 15_000;

type Run = BoardRun<OemRecoveryConfig>;

/** ssh-copy-id with the password; whether the device now takes the key. A copy that hangs fails the job, as upstream's timeout does. */
async function copyId(run: Run): Promise<boolean> {
  const result = await copyIdWithPassword(run.login, { timeoutMs: COPY_ID_TIMEOUT_MS });
  if (result.timedOut) throw new ConnectorError(`ssh-copy-id to ${describeTarget(run.ctx, run.login.user)} ran over ${COPY_ID_TIMEOUT_MS / 1000}s`);
  if (result.exitCode !== 0) run.ctx.print(`ssh-copy-id to ${describeTarget(run.ctx, run.login.user)} failed (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
  return result.exitCode === 0;
}

/** A classic image is ready once it answers; Ubuntu Core once snapd has finished "Initialize device". */
async function initialized(run: Run): Promise<boolean> {
  const model = await runWithPassword(run.login, 'snap model', CHECK_TIMEOUT_MS);
  if (model.exitCode === 0 && model.stdout.split('\n').some((line) => line.includes('model') && line.includes('generic-classic'))) return true;
  const changes = await runWithPassword(run.login, 'snap changes', CHECK_TIMEOUT_MS);
  return changes.exitCode === 0 && changes.stdout.split('\n').some((line) => line.includes('Initialize device') && line.includes('Done'));
}

/** Upstream's check_device_booted: a look every boot_poll_seconds (pause first), for boot_timeout_seconds; then the key is copied. */
async function awaitRecoveredSystem(run: Run): Promise<void> {
  const { ctx, config } = run;
  ctx.print('Checking to see if the device is available.');
  const look = async () => (await initialized(run)) && (await copyId(run));
  const ready = await waitUntil(ctx, look, (done) => done, { seconds: config.boot_timeout_seconds, pauseSeconds: config.boot_poll_seconds });
  if (ready.done) return;
  ctx.print(`Device ${quoted(config.agent_name ?? config.device_ip)} unreachable, provisioning failed!`);
  throw new ConnectorError('Failed to boot test image!');
}

/** recovery_cmds run on the device as the test user (key login), 600 s each; the first that fails fails the job with its output. */
async function runRecoveryCommands(run: Run): Promise<void> {
  for (const command of run.config.recovery_cmds) {
    run.ctx.print(`Running ${command}`);
    const result = await sshRun(run.ctx.device, run.login.user, command, undefined, RECOVERY_CMD_TIMEOUT_MS);
    if (result.exitCode === 124) throw new ConnectorError(`timeout reaching control host! (${quoted(command)} ran over ${RECOVERY_CMD_TIMEOUT_MS / 1000}s)`);
    if (result.exitCode !== 0) throw new ConnectorError(`${quoted(command)} failed (exit ${result.exitCode}): ${quoted(result.output.trim(), 400)}`);
    if (result.output.trim()) run.ctx.print(result.output.trimEnd());
  }
}

export async function provisionOemRecovery(ctx: PhaseContext): Promise<number> {
  const config = oemRecoveryConfig(ctx.device);
  const run: Run = { ctx, config, login: testImageLogin(ctx, 'ubuntu') };
  if (!(await copyId(run))) {
    await hardReset(ctx, config.reboot_script);
    await awaitRecoveredSystem(run);
  }
  ctx.print('Recovering OEM image');
  await runRecoveryCommands(run);
  await awaitRecoveredSystem(run);
  writeDeviceInfo(ctx);
  return 0;
}
