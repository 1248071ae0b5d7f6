/**
 * What upstream does on the installed system before a deploy, over SSH: put network boot first
 * in the EFI boot order (machines with USB network adapters lose it), and clear the TPM.
 */
import type { PhaseContext } from '../../phases';
import { testUsername } from '../../phases';
import { sshRun } from '../../ssh';
import { shellWords } from '../../steps';

const EFI_TIMEOUT_MS = 60_000;
const BOOT_ENTRY = /^Boot([0-9A-Fa-f]{4})\*?$/;
const BOOT_NUMBER = /^[0-9A-Fa-f]{4}$/;

/**
 * The boot order with network (IPv4) entries first, from `efibootmgr -v` output: the entry
 * booted now if it is one, then the other IPv4 entries, then the rest of the current order.
 * Undefined when the output has no BootOrder.
 */
export function networkFirstBootOrder(efibootmgr: string): string[] | undefined {
  const lines = efibootmgr.split('\n').map((line) => line.trim());
  const value = (key: string) => lines.find((line) => line.startsWith(`${key}:`))?.slice(key.length + 1).trim();
  const order = value('BootOrder')?.split(',').map((n) => n.trim()).filter((n) => BOOT_NUMBER.test(n));
  if (!order) return undefined;
  const ipv4 = lines.flatMap((line) => {
    const [key = '', ...rest] = line.split(' ');
    const number = BOOT_ENTRY.exec(key)?.[1];
    return number && rest.join(' ').includes('IPv4') ? [number] : [];
  });
  const current = value('BootCurrent');
  const first = current && ipv4.includes(current) ? [current] : [];
  return [...new Set([...first, ...ipv4, ...order])];
}

async function efiEntries(ctx: PhaseContext): Promise<string | undefined> {
  const user = testUsername(ctx);
  const read = () => sshRun(ctx.device, user, shellWords(['sudo', 'efibootmgr', '-v']), undefined, EFI_TIMEOUT_MS);
  let result = await read();
  if (result.exitCode !== 0) {
    // Upstream's fallback where the image has no efibootmgr: the efitools snap.
    await sshRun(ctx.device, user, shellWords(['sudo', 'snap', 'install', 'efi-tools-ijohnson', '--devmode', '--edge']), undefined, 5 * EFI_TIMEOUT_MS);
    await sshRun(ctx.device, user, shellWords(['sudo', 'snap', 'alias', 'efi-tools-ijohnson.efibootmgr', 'efibootmgr']), undefined, EFI_TIMEOUT_MS);
    result = await read();
  }
  return result.exitCode === 0 ? result.output : undefined;
}

/** Best effort, as upstream: a machine that cannot be reached or changed is deployed anyway. */
export async function resetEfiBootOrder(ctx: PhaseContext): Promise<void> {
  ctx.print('MAAS: putting network boot first in the EFI boot order');
  const entries = await efiEntries(ctx);
  const order = entries === undefined ? undefined : networkFirstBootOrder(entries);
  if (!order) {
    ctx.print('MAAS: cannot read the EFI boot order; deploying with it as it is');
    return;
  }
  const result = await sshRun(ctx.device, testUsername(ctx), shellWords(['sudo', 'efibootmgr', '-o', order.join(',')]), undefined, EFI_TIMEOUT_MS);
  ctx.print(result.exitCode === 0 ? `MAAS: EFI boot order set to ${order.join(',')}` : `MAAS: setting the EFI boot order to ${order.join(',')} failed: ${result.output.trim()}`);
}

/** Asks the firmware to clear the TPM at the next boot (PPI request 5), and checks it took. */
export async function requestTpmClear(ctx: PhaseContext): Promise<boolean> {
  const user = testUsername(ctx);
  const request = '/sys/class/tpm/tpm0/ppi/request';
  const write = await sshRun(ctx.device, user, `echo 5 | ${shellWords(['sudo', 'tee', request])}`, undefined, 30_000);
  if (write.exitCode !== 0) return false;
  const read = await sshRun(ctx.device, user, shellWords(['cat', request]), undefined, 30_000);
  return read.exitCode === 0 && read.output.trim() === '5';
}
