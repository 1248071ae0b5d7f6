/**
 * Upstream's image handling for boards whose image is pulled over the network by the board
 * side (dragonboard's master image, netboot's imager): the job's image is downloaded here,
 * recompressed to xz as upstream's compress_file does (xz kept, gz/bz2/qcow2/raw recompressed),
 * and served once over plain TCP, the whole file to the first connection.
 */
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConnectorError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { runCommand } from '../../steps';
import { quoted } from '../../../common/text';

const DOWNLOAD_TIMEOUT_MS = 60 * 60_000;
const CONVERT_TIMEOUT_MS = 60 * 60_000;

type ImageKind = 'xz' | 'gz' | 'bz2' | 'qcow2' | 'raw';

const MAGIC: readonly [ImageKind, Buffer][] = [
  ['gz', Buffer.from([0x1f, 0x8b, 0x08])],
  ['bz2', Buffer.from('BZh')],
  ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['qcow2', Buffer.from([0x51, 0x46, 0x49, 0xfb])],
];

/** Each converter reads $1 and writes xz to $2 (bash: a failing stage fails the whole). */
const TO_XZ: Record<Exclude<ImageKind, 'xz'>, string> = {
  gz: 'set -o pipefail; gzip -dc < "$1" | xz -c -T0 > "$2"',
  bz2: 'set -o pipefail; bzip2 -dc < "$1" | xz -c -T0 > "$2"',
  qcow2: 'qemu-img convert -O raw "$1" "$1.raw" && xz -c -T0 < "$1.raw" > "$2"',
  raw: 'xz -c -T0 < "$1" > "$2"',
};

function imageKind(file: string): ImageKind {
  const fd = fs.openSync(file, 'r');
  const head = Buffer.alloc(8);
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  return MAGIC.find(([, magic]) => head.subarray(0, magic.length).equals(magic))?.[0] ?? 'raw';
}

async function download(ctx: PhaseContext, url: string, file: string): Promise<void> {
  ctx.print(`Downloading file from ${url}`);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  } catch (error) {
    throw new ConnectorError(`Error downloading image ${quoted(url)}: ${(error as Error).message}`, { cause: error });
  }
}

/** The image in a private directory as an xz file: the caller removes `dir` when done. */
export async function fetchImageAsXz(ctx: PhaseContext, url: string): Promise<{ dir: string; file: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-image-'));
  const image = path.join(dir, 'install.img');
  const file = `${image}.xz`;
  try {
    await download(ctx, url, image);
    const kind = imageKind(image);
    if (kind === 'xz') fs.renameSync(image, file);
    else {
      const result = await runCommand(['bash', '-c', TO_XZ[kind], 'to-xz', image, file], { timeoutMs: CONVERT_TIMEOUT_MS });
      if (result.exitCode !== 0) throw new ConnectorError(`cannot convert the ${kind} image to xz (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
      fs.rmSync(image, { force: true });
    }
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return { dir, file };
}

/** The address of this host that `host` sees (the route's source), which upstream finds the same way for its default route. */
export function localAddressFor(host: string): Promise<string> {
  const socket = dgram.createSocket(net.isIPv6(host.split('%')[0] ?? '') ? 'udp6' : 'udp4');
  return new Promise<string>((resolve, reject) => {
    socket.once('error', (error) => reject(new ConnectorError(`cannot find this host's address towards ${quoted(host)}: ${error.message}`)));
    socket.connect(9, host, () => resolve(socket.address().address));
  }).finally(() => socket.close());
}

export interface ImageServer {
  address: string;
  port: number;
  close(): void;
}

/** Serves `file` to the first connection on `address` (any port), then stops listening, as upstream's serve_file. */
export async function serveOnce(file: string, address: string): Promise<ImageServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    server.close();
    sockets.add(socket);
    socket.on('error', () => undefined);
    const stream = fs.createReadStream(file);
    stream.on('error', () => socket.destroy());
    stream.pipe(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, resolve);
  });
  const close = () => {
    server.close();
    for (const socket of sockets) socket.destroy();
  };
  return { address, port: (server.address() as net.AddressInfo).port, close };
}
