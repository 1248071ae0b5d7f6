import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface WriteOptions {
  /** Mode of the directories created on the way (default: the umask's). */
  dirMode?: number;
  /** Owner given to the new file before it is renamed into place (root only). */
  owner?: { uid: number; gid: number };
}

/**
 * Writes through a temp file and a rename, so a reader sees the old or the new content, never
 * half of one. The temp file is created exclusively and chowned through its descriptor, so no
 * link planted in the directory is followed. Returns false (and writes nothing) when the content,
 * mode and owner are already there.
 */
export function writeFileAtomic(file: string, content: string | Buffer, mode = 0o644, options: WriteOptions = {}): boolean {
  const data = typeof content === 'string' ? Buffer.from(content) : content;
  if (sameContent(file, data, mode, options.owner)) return false;
  fs.mkdirSync(path.dirname(file), { recursive: true, ...(options.dirMode !== undefined ? { mode: options.dirMode } : {}) });
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fchmodSync(fd, mode);
    if (options.owner) fs.fchownSync(fd, options.owner.uid, options.owner.gid);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return true;
}

function sameContent(file: string, data: Buffer, mode: number, owner: WriteOptions['owner']): boolean {
  try {
    const stat = fs.lstatSync(file);
    if (!stat.isFile() || (stat.mode & 0o7777) !== mode || stat.size !== data.length) return false;
    if (owner && (stat.uid !== owner.uid || stat.gid !== owner.gid)) return false;
    return readFileNoFollow(file, data.length + 1).equals(data);
  } catch {
    return false;
  }
}

/** Points `link` at `target` in one rename, so there is never a moment without the link. */
export function switchSymlink(link: string, target: string): void {
  const tmp = `${link}.tmp-${randomBytes(4).toString('hex')}`;
  fs.symlinkSync(target, tmp);
  fs.renameSync(tmp, link);
}

export function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

export function readJsonFile<T>(file: string, fallback: T): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw error;
  }
}

/** Something other than a regular file at `file`; `code` is open's (ELOOP: a link), as callers read errno codes. */
export class NotRegularFile extends Error {
  override readonly name = 'NotRegularFile';
  constructor(readonly file: string, readonly code?: string) {
    super(`${file}: not a regular file${code ? ` (${code})` : ''}`);
  }
}

/** Open errors that mean "something other than a regular file is there": a link, a FIFO without a reader, a directory. */
const NOT_REGULAR_CODES = new Set(['ELOOP', 'ENXIO', 'EISDIR']);

/**
 * Opens `file` as a regular file only: never through a final link (O_NOFOLLOW), never waiting on
 * a FIFO (O_NONBLOCK), and checked on the descriptor (fstat). A link, a FIFO, a directory or a
 * device throws NotRegularFile (nothing is left open); other errors (ENOENT, EACCES) are thrown
 * as they are. For files in a directory someone else can write (a job's run dir, /tmp).
 */
export function openRegularFile(file: string, flags: number, mode?: number): { fd: number; stat: fs.Stats } {
  let fd: number;
  try {
    fd = fs.openSync(file, flags | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (NOT_REGULAR_CODES.has(code)) throw new NotRegularFile(file, code);
    throw error;
  }
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) {
    fs.closeSync(fd);
    throw new NotRegularFile(file);
  }
  return { fd, stat };
}

/** Reads a regular file (openRegularFile) of at most `cap` bytes; a larger one is refused. */
export function readFileNoFollow(file: string, cap: number): Buffer {
  const { fd, stat } = openRegularFile(file, fs.constants.O_RDONLY);
  try {
    if (stat.size > cap) throw new Error(`${file} is larger than ${cap} bytes`);
    const buffer = Buffer.alloc(stat.size);
    let read = 0;
    while (read < stat.size) {
      const n = fs.readSync(fd, buffer, read, stat.size - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read);
  } finally {
    fs.closeSync(fd);
  }
}
