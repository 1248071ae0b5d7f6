/**
 * Where the test image comes from, as upstream takes it: provision_data.url, downloaded here
 * first; else provision_data.use_attachment, a file the job attached under
 * attachments/provision/ in its run directory. Either way an open file the image is streamed from.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NotRegularFile, openRegularFile } from '../../../common/fsutil';
import { quoted } from '../../../common/text';
import type { MuxpiConfig, MuxpiProvision } from './config';
import { ProvisioningError } from './errors';

/** Upstream's time limits for writing the image: a downloaded one, an attached one. */
const FLASH_TIMEOUT_URL_SECONDS = 1800;
const FLASH_TIMEOUT_ATTACHMENT_SECONDS = 1200;

export interface ImageSource {
  /** How messages name the image: the URL's file name, or the attachment's. */
  name: string;
  fd: number;
  flashTimeoutSeconds: number;
  close(): void;
}

/** attachments/ and attachments/provision/ are the job's: each must be a directory itself, never a link to one. */
function realDirectory(dir: string): boolean {
  try {
    return fs.lstatSync(dir).isDirectory();
  } catch {
    return false;
  }
}

export function openAttachment(runDir: string, name: string, config: MuxpiConfig): ImageSource {
  const dir = path.join(runDir, 'attachments', 'provision');
  const missing = () => new ProvisioningError(`In the "provision_data" section of your job_data you have provided a value for "use_attachment" but that attachment doesn't exist: ${quoted(name)}`);
  if (!realDirectory(path.dirname(dir)) || !realDirectory(dir)) throw missing();
  try {
    const { fd } = openRegularFile(path.join(dir, name), fs.constants.O_RDONLY);
    return { name, fd, flashTimeoutSeconds: config.muxpi_flash_timeout_seconds ?? FLASH_TIMEOUT_ATTACHMENT_SECONDS, close: () => fs.closeSync(fd) };
  } catch (error) {
    if (error instanceof NotRegularFile) throw new ProvisioningError(`the attachment ${quoted(name)} is not a regular file (a link, say): not used`);
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw missing();
    throw error;
  }
}

/** Streams the response body into `fd`; a body silent for `idleSeconds` is abandoned (upstream's read timeout). */
async function saveBody(url: string, fd: number, idleSeconds: number): Promise<void> {
  const abort = new AbortController();
  let timer = setTimeout(() => abort.abort(), idleSeconds * 1000);
  try {
    const response = await fetch(url, { signal: abort.signal, redirect: 'follow' });
    if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    for await (const chunk of response.body) {
      clearTimeout(timer);
      timer = setTimeout(() => abort.abort(), idleSeconds * 1000);
      fs.writeSync(fd, chunk as Uint8Array);
    }
  } catch (error) {
    const why = abort.signal.aborted ? `nothing received for ${idleSeconds}s` : ((error as Error).cause as Error | undefined)?.message ?? (error as Error).message;
    throw new ProvisioningError(`Downloading the test image from ${quoted(url)} failed: ${why}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

/** Downloads the image into a private temp file (removed on close), as upstream does before writing it. */
export async function downloadImage(url: string, config: MuxpiConfig, print: (line: string) => void): Promise<ImageSource> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-muxpi-image-'));
  const file = path.join(dir, 'image');
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  const close = () => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    print(`Downloading test image from ${quoted(url)}`);
    await saveBody(url, fd, config.muxpi_download_timeout_seconds);
  } catch (error) {
    close();
    throw error;
  }
  const name = path.posix.basename(new URL(url).pathname) || url;
  // The image is read back from the start through a descriptor of its own.
  const readFd = fs.openSync(file, fs.constants.O_RDONLY);
  return {
    name,
    fd: readFd,
    flashTimeoutSeconds: config.muxpi_flash_timeout_seconds ?? FLASH_TIMEOUT_URL_SECONDS,
    close: () => {
      fs.closeSync(readFd);
      close();
    },
  };
}

/** As upstream: the URL when the job gives one, else the attachment. */
export async function openImage(data: MuxpiProvision, runDir: string, config: MuxpiConfig, print: (line: string) => void): Promise<ImageSource> {
  if (data.url !== undefined) return downloadImage(data.url, config, print);
  return openAttachment(runDir, data.use_attachment ?? '', config);
}
