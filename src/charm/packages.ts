/** Distribution packages and the ubuntu user: real units only; a sandbox skips them and says so. */
import type { Runner } from '../common/exec';
import type { FileOwner } from './ssh';

export const HOST_PACKAGES = ['supervisor', 'git', 'openssh-client'];

export async function installPackages(run: Runner, names: readonly string[]): Promise<void> {
  const env = { DEBIAN_FRONTEND: 'noninteractive', PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  await run('apt-get', ['update', '-q'], { env });
  await run('apt-get', ['install', '-y', '-q', ...names], { env });
}

/** Creates the ubuntu user when it is missing and returns its ids. */
export async function ensureUbuntuUser(run: Runner): Promise<FileOwner> {
  const exists = await run('id', ['-u', 'ubuntu'], { okExitCodes: [1] });
  if (exists.exitCode !== 0) await run('useradd', ['--create-home', '--shell', '/bin/bash', 'ubuntu']);
  const uid = Number((await run('id', ['-u', 'ubuntu'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'ubuntu'])).stdout.trim());
  return { uid, gid };
}
