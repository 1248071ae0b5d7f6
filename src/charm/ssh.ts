/**
 * The SSH files the agents of a sandbox root share, in its ~ubuntu/.ssh (a unit gives each agent
 * its own, root's: agentfiles.ts). That directory may be the agents' user's, so the files are
 * written as that user: nothing a job plants there can make root write elsewhere.
 */
import * as fs from 'node:fs';
import { writeFileAtomic } from '../common/fsutil';
import { asUser, type FileOwner } from '../common/privileges';
import type { CharmConfig } from './config';
import type { HostPaths } from './paths';

export type { FileOwner };

export class SshFilesError extends Error {
  override readonly name = 'SshFilesError';
}

/**
 * Writes the key pair and config that are set (an empty option leaves its file alone) and
 * returns whether any file changed. `owner` is undefined in a sandbox: the files are ours.
 */
export function writeSshFiles(paths: HostPaths, config: CharmConfig, owner: FileOwner | undefined): boolean {
  const files = sharedSshFiles(paths, config).map((f): [string, string, number] => [f.file, f.content, f.mode]);
  if (files.every(([, content]) => content === '')) return false;
  try {
    return asUser(owner, () => {
      fs.mkdirSync(paths.sshDir, { recursive: true, mode: 0o700 });
      if (!fs.lstatSync(paths.sshDir).isDirectory()) throw new SshFilesError(`SSH files: ${paths.sshDir} is not a directory (a link?)`);
      let changed = false;
      for (const [file, content, mode] of files) {
        if (content !== '') changed = writeFileAtomic(file, content, mode) || changed;
      }
      return changed;
    });
  } catch (error) {
    if (error instanceof SshFilesError) throw error;
    throw new SshFilesError(`SSH files: cannot write them in ${paths.sshDir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** One SSH file the charm manages: where, what, and its mode. */
export interface SshFileSpec {
  label: string;
  file: string;
  content: string;
  mode: number;
}

/** The shared ~ubuntu/.ssh files of a sandbox. */
export function sharedSshFiles(paths: HostPaths, config: CharmConfig): SshFileSpec[] {
  return [
    { label: '~ubuntu/.ssh/id_rsa', file: paths.sshPrivateKey, content: config['ssh-private-key'], mode: 0o600 },
    { label: '~ubuntu/.ssh/id_rsa.pub', file: paths.sshPublicKey, content: config['ssh-public-key'], mode: 0o644 },
    { label: '~ubuntu/.ssh/config', file: paths.sshConfig, content: config['ssh-config'], mode: 0o640 },
  ];
}
