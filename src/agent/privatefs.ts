/**
 * Files and folders only the agent's user may read: a job's definition carries its secrets, and
 * the agent shares /tmp with every other account on the host. Modes are set explicitly after
 * creation because the process umask may be looser (or the folder may already exist).
 */
import * as fs from 'node:fs';

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

/** Appends to a file created 0600 when missing. */
export function appendPrivateFile(file: string, data: string): void {
  fs.appendFileSync(file, data, { mode: PRIVATE_FILE_MODE });
}
