/** The SSH files the agents use to reach devices, in the ubuntu user's ~/.ssh. */
import * as fs from 'node:fs';
import { writeFileAtomic } from '../common/fsutil';
import type { CharmConfig } from './config';
import type { HostPaths } from './paths';

export interface FileOwner {
  uid: number;
  gid: number;
}

/**
 * Writes the key pair and config that are set (an empty option leaves its file alone) and
 * returns whether any file changed. `owner` is undefined in a sandbox: nothing is chowned.
 */
export function writeSshFiles(paths: HostPaths, config: CharmConfig, owner: FileOwner | undefined): boolean {
  fs.mkdirSync(paths.sshDir, { recursive: true, mode: 0o700 });
  const files: [string, string, number][] = [
    [paths.sshPrivateKey, config['ssh-private-key'], 0o600],
    [paths.sshPublicKey, config['ssh-public-key'], 0o644],
    [paths.sshConfig, config['ssh-config'], 0o640],
  ];
  let changed = false;
  for (const [file, content, mode] of files) {
    if (content === '') continue;
    changed = writeFileAtomic(file, content, mode) || changed;
    if (owner) fs.chownSync(file, owner.uid, owner.gid);
  }
  if (owner) fs.chownSync(paths.sshDir, owner.uid, owner.gid);
  return changed;
}
