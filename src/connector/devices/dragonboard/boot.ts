/**
 * Which image a dragonboard runs, and getting it into the one wanted: the master image (Debian
 * on a USB stick, which writes SD cards) or the test image (on the SD card), chosen by the lab's
 * select scripts and a power cycle, as upstream's connector does.
 */
import { ConnectorError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { sshRun } from '../../ssh';
import { recoveryFailed } from '../../steps';
import { hardReset, selectBoot } from '../sshboot/local';
import { copyIdWithPassword, type PasswordLogin } from '../sshboot/password';
import { runOn, type SshTarget } from '../sshboot/remote';
import { waitUntil } from '../sshboot/wait';
import type { DragonboardConfig } from './config';

const CHECK_TIMEOUT_MS = 60_000;

export interface Board {
  ctx: PhaseContext;
  config: DragonboardConfig;
  /** The master image's login (key). */
  master: SshTarget;
  /** The test image's login (password until the key is copied). */
  test: PasswordLogin;
}

/** Upstream copies the agents' key to the test image at every chance and ignores a failure. */
export async function copyKeyToTestImage(board: Board): Promise<void> {
  await copyIdWithPassword(board.test, { timeoutMs: CHECK_TIMEOUT_MS });
}

/** The test image runs when the test user gets in with the key and finds snap. */
export async function testImageBooted(board: Board): Promise<boolean> {
  board.ctx.print('Checking if test image booted.');
  return (await sshRun(board.ctx.device, board.test.user, 'snap -h', undefined, CHECK_TIMEOUT_MS)).exitCode === 0;
}

/** The master image runs when its /etc/issue says Debian. */
export async function masterImageBooted(board: Board): Promise<boolean> {
  board.ctx.print('Checking if master image booted.');
  const result = await runOn(board.ctx, board.master, 'cat /etc/issue', CHECK_TIMEOUT_MS);
  return result.exitCode === 0 && result.output.includes('Debian GNU');
}

/** A reboot_script command that exits non-zero fails the job here (upstream lets its error through); one that hangs is a recovery failure. */
function powerCycle(board: Board): Promise<void> {
  return hardReset(board.ctx, board.config.reboot_script, 'job');
}

type Running = 'master' | 'test' | 'unknown';

async function running(board: Board): Promise<Running> {
  if (await masterImageBooted(board)) return 'master';
  return (await testImageBooted(board)) ? 'test' : 'unknown';
}

/** Upstream's ensure_master_image: from the test image, select the master and power cycle; from an unknown state, power cycle and see. */
export async function ensureMasterImage(board: Board, attempt = 1): Promise<void> {
  const { ctx, config } = board;
  const wait = { seconds: config.master_boot_timeout_seconds, pauseSeconds: config.boot_poll_seconds };
  ctx.print('Making sure the master image is booted');
  if (await testImageBooted(board)) {
    await selectBoot(ctx, config.select_master_script, false);
    await powerCycle(board);
    if ((await waitUntil(ctx, () => masterImageBooted(board), (up) => up, wait)).done) return;
    throw recoveryFailed('Could not reboot to master!');
  }
  if (await masterImageBooted(board)) return;
  ctx.print('Device is in an unknown state, attempting to recover');
  await powerCycle(board);
  const state = await waitUntil(ctx, () => running(board), (now) => now !== 'unknown', wait);
  if (state.value === 'master') return;
  // Stuck in the test image: once more from there (upstream recurses without a bound).
  if (state.value === 'test' && attempt < 3) return ensureMasterImage(board, attempt + 1);
  throw recoveryFailed('Device is in an unknown state, may require manual recovery!');
}

/** Upstream's ensure_test_image: select the test image, reboot the master, and wait for the test image to take the key. */
export async function ensureTestImage(board: Board): Promise<void> {
  const { ctx, config } = board;
  ctx.print('Booting the test image');
  await selectBoot(ctx, config.select_test_script, false);
  // The reboot may cut the connection before ssh reports success; upstream goes on either way.
  await runOn(ctx, board.master, 'sudo /sbin/reboot', CHECK_TIMEOUT_MS);
  await ctx.sleep(config.boot_settle_seconds * 1000);
  const look = async () => {
    await copyKeyToTestImage(board);
    return testImageBooted(board);
  };
  const booted = await waitUntil(ctx, look, (up) => up, { seconds: config.boot_timeout_seconds, pauseSeconds: config.boot_poll_seconds });
  if (!booted.done) throw new ConnectorError('Failed to boot test image!');
}
