import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes through a temp file and a rename, so a reader sees the old or the new content, never
 * half of one. Returns false (and writes nothing) when the content is already there.
 */
export function writeFileAtomic(file: string, content: string | Buffer, mode = 0o644): boolean {
  const data = typeof content === 'string' ? Buffer.from(content) : content;
  if (sameContent(file, data, mode)) return false;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, data, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
  return true;
}

function sameContent(file: string, data: Buffer, mode: number): boolean {
  try {
    const stat = fs.statSync(file);
    return (stat.mode & 0o7777) === mode && stat.size === data.length && fs.readFileSync(file).equals(data);
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

/** A digest of every file under a directory: names, modes and contents, in a stable order. */
export function hashTree(dir: string): string {
  const h = createHash('sha256');
  const walk = (rel: string): void => {
    const entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const relPath = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(relPath);
      else if (entry.isFile()) h.update(relPath).update('\0').update(fs.readFileSync(path.join(dir, relPath))).update('\0');
      else if (entry.isSymbolicLink()) h.update(relPath).update('->').update(fs.readlinkSync(path.join(dir, relPath)));
    }
  };
  walk('');
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
