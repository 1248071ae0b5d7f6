/**
 * The master image's imager, an HTTP service on the device (port 8989): /check says whether it
 * runs, /writeimage has it pull the xz image from this host and write it to a disk, /reboot
 * boots the device again.
 */
import * as net from 'node:net';
import { ConnectorError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { quoted } from '../../../common/text';
import type { ImageServer } from '../sshboot/image';
import type { NetbootConfig } from './config';

const CHECK_TIMEOUT_MS = 30_000;
const WRITE_TIMEOUT_MS = 30 * 60_000;
const REBOOT_TIMEOUT_MS = 10_000;
/** What the imager's /check answers. */
const IMAGER_BANNER = 'Snappy Test Device Imager';

function hostPort(host: string, port: number): string {
  return `${net.isIPv6(host.split('%')[0] ?? '') ? `[${host}]` : host}:${port}`;
}

function imagerUrl(config: NetbootConfig, pathAndQuery: string): string {
  return `http://${hostPort(config.device_ip, config.netboot_imager_port)}${pathAndQuery}`;
}

async function get(url: string, timeoutMs: number): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${body.slice(0, 200)}`);
  return body;
}

export async function masterImageBooted(ctx: PhaseContext, config: NetbootConfig): Promise<boolean> {
  const url = imagerUrl(config, '/check');
  ctx.print(`Checking if master image booted: ${url}`);
  try {
    return (await get(url, CHECK_TIMEOUT_MS)).includes(IMAGER_BANNER);
  } catch {
    return false;
  }
}

/**
 * Has the imager write the served image to test_device. The query is a real one (`&dev=`), where
 * upstream's URL carries a stray backslash before the `&`.
 */
export async function writeImage(ctx: PhaseContext, config: NetbootConfig, server: ImageServer): Promise<void> {
  const query = new URLSearchParams({ server: hostPort(server.address, server.port), dev: config.test_device });
  const url = imagerUrl(config, `/writeimage?${query.toString()}`);
  ctx.print(`Triggering: ${url}`);
  try {
    const output = await get(url, WRITE_TIMEOUT_MS);
    ctx.print('Image write output:');
    ctx.print(output.trimEnd());
  } catch (error) {
    throw new ConnectorError(`Error while flashing image! (${quoted((error as Error).message)})`, { cause: error });
  }
}

/** The imager's reboot may not answer before the device goes down; upstream ignores that. */
export async function rebootFromImager(ctx: PhaseContext, config: NetbootConfig): Promise<void> {
  const url = imagerUrl(config, '/reboot');
  ctx.print(`Rebooting target device: ${url}`);
  await get(url, REBOOT_TIMEOUT_MS).catch(() => undefined);
}
