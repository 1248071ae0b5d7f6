/**
 * Offline markers (`/tmp/TESTFLINGER-DEVICE-OFFLINE-<agent>`): the agent reads them before every
 * job and takes none while one exists; a running job is never interrupted.
 *
 * /tmp is world-writable, and the charm is root. A marker is therefore written as the agent
 * user (`asUser`), opened with O_NOFOLLOW: a link planted at the marker's path is refused, and a
 * file someone else owns cannot be written; either way root never writes through what another
 * user controls (docs/security.md, "Root never works through what `ubuntu` can change"). A
 * temp file and a rename would not help here: in a sticky /tmp the rename fails over another
 * user's file, and the name is what the agent checks. A marker counts (for the agent and here)
 * only as a regular file of the agent's user or root, read without following a link or waiting
 * on a FIFO; names that are not agent ids have no marker, so every path is a file in /tmp.
 * Removal unlinks counted markers only; unlink never follows a link, and the rest is reported
 * and left alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { markerOwners, offlineMarkerNames, readMarkerFile } from '../../agent/agent';
import { asUser, type FileOwner } from '../../common/privileges';
import type { HostPaths } from '../paths';

/** A reason is one line an operator types: capped, and kept free of control characters. */
export const REASON_MAX = 200;
export const REASON_PATTERN = /^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$/;
const MARKER_READ_MAX = 4096;

export interface Marker {
  path: string;
  /** The file's text (the reason), or why it was not read. */
  reason: string;
  /** Not a regular file of the agent's user or root (a link, a FIFO, a stranger's): the agent ignores it; we never touch it. */
  irregular: boolean;
}

/** The marker this charm writes for an agent: named after its program (directory) name. */
export function markerPath(paths: HostPaths, name: string): string {
  const [marker] = offlineMarkerNames([name]);
  if (marker === undefined) throw new Error(`${JSON.stringify(name)} is not an agent name; no marker`);
  return path.join(paths.offlineMarkerDir, marker);
}

/** Every marker the agent would obey: its program name and agent_id, with and without the dash. */
function markerPaths(paths: HostPaths, names: readonly string[]): string[] {
  return offlineMarkerNames(names).map((m) => path.join(paths.offlineMarkerDir, m));
}

/** `owner`: the agent's user; none (a sandbox without users) means ours. */
export function readMarkers(paths: HostPaths, names: readonly string[], owner: FileOwner | undefined): Marker[] {
  const owners = markerOwners(owner?.uid ?? process.geteuid?.() ?? 0);
  const found: Marker[] = [];
  for (const file of markerPaths(paths, names)) {
    const read = readMarkerFile(file, owners, MARKER_READ_MAX);
    if (!read.found) continue;
    found.push('refused' in read ? { path: file, reason: read.refused, irregular: true } : { path: file, reason: read.text.trim(), irregular: false });
  }
  return found;
}

/** Writes the agent's marker with the reason, as `owner`; throws with a short reason when refused. */
export function writeMarker(paths: HostPaths, name: string, reason: string, owner: FileOwner | undefined): void {
  const file = markerPath(paths, name);
  asUser(owner, () => {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, 0o644);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new Error(code === 'ELOOP' ? `${file} is a link; refused` : `cannot write ${file}: ${code ?? (error as Error).message}`);
    }
    try {
      if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a regular file; refused`);
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${reason}\n`);
    } finally {
      fs.closeSync(fd);
    }
  });
}

/** Removes the agent's regular-file markers; returns those removed and those left (links). */
export function removeMarkers(paths: HostPaths, names: readonly string[], owner: FileOwner | undefined): { removed: string[]; left: string[] } {
  const removed: string[] = [];
  const left: string[] = [];
  for (const marker of readMarkers(paths, names, owner)) {
    if (marker.irregular) {
      left.push(marker.path);
      continue;
    }
    fs.rmSync(marker.path, { force: true });
    removed.push(marker.path);
  }
  return { removed, left };
}
