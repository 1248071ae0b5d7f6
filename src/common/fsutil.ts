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

/**
 * Reads a regular file without following a final symlink and without reading more than `cap`
 * bytes; anything else (a link, a FIFO, a device) is refused.
 */
export function readFileNoFollow(file: string, cap: number): Buffer {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new Error(`${file} is not a regular file`);
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
