/**
 * Files and folders only the agent's user may read: a job's definition carries its secrets, and
 * the agent shares /tmp with every other account on the host. Modes are set explicitly after
 * creation because the process umask may be looser (or the folder may already exist).
 */
import * as fs from 'node:fs';
import { NotRegularFile, openRegularFile } from '../common/fsutil';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates the folder (and missing parents) as 0700 and re-tightens it when it already exists. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  fs.chmodSync(dir, PRIVATE_DIR_MODE);
}

/**
 * For a base folder that holds private folders: tightened when the agent owns it, left as it
 * is (returning why) when it does not, e.g. made by root for the agent. The private folders
 * inside keep their contents safe either way.
 */
export function tightenBaseDir(dir: string): string | undefined {
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  try {
    fs.chmodSync(dir, PRIVATE_DIR_MODE);
    return undefined;
  } catch (error) {
    return `${JSON.stringify(dir)} left as it is: ${(error as Error).message}`;
  }
}

/** Writes (truncating) a 0600 file; an existing file with a looser mode is tightened first. */
export function writePrivateFile(file: string, data: string | Buffer): void {
  const fd = fs.openSync(file, 'w', PRIVATE_FILE_MODE);
  try {
    fs.fchmodSync(fd, PRIVATE_FILE_MODE);
    fs.writeFileSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Files in a job's run directory, which the job's test phase may have replaced with a link, a
 * FIFO, a hard link or a directory. The run directory's own path is the agent's (its parent is
 * 0700 and hidden from the sandbox; the run directory is a mount point there), so only the last
 * component is the job's: it is opened without following a link and without waiting on a FIFO,
 * and used only when it is a regular file of the agent's with no other name.
 */
export class RunDirFileRefused extends Error {
  override readonly name = 'RunDirFileRefused';
}

const { O_WRONLY, O_APPEND, O_CREAT } = fs.constants;

/** The file's descriptor, or RunDirFileRefused (closed) when it is not a plain file of ours. */
function openRunDirFile(file: string, flags: number): number {
  let opened: { fd: number; stat: fs.Stats };
  try {
    opened = openRegularFile(file, flags, PRIVATE_FILE_MODE);
  } catch (error) {
    if (error instanceof NotRegularFile) throw new RunDirFileRefused(error.message);
    throw error;
  }
  const { fd, stat } = opened;
  const why = stat.uid !== process.geteuid?.() ? `owned by uid ${stat.uid}` : stat.nlink !== 1 ? 'has another name (a hard link)' : undefined;
  if (why) {
    fs.closeSync(fd);
    throw new RunDirFileRefused(`${file}: ${why}`);
  }
  fs.fchmodSync(fd, PRIVATE_FILE_MODE);
  return fd;
}

/** An append descriptor for a log in the run directory (created 0600 when missing). */
export function openRunDirLog(file: string): number {
  return openRunDirFile(file, O_WRONLY | O_APPEND | O_CREAT);
}

/** Writes (replacing) a file in the run directory; refused as openRunDirFile says. */
export function writeRunDirFile(file: string, data: string): void {
  const fd = openRunDirFile(file, O_WRONLY | O_CREAT);
  try {
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, data, 0);
  } finally {
    fs.closeSync(fd);
  }
}
