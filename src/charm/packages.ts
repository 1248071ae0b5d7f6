/** Distribution packages: real units only; a sandbox skips them and says so. */
import { CommandError, type Runner } from '../common/exec';

/**
 * bubblewrap: the test phase's sandbox; acl: setfacl, to let an agent through a 0750 home to its
 * basedirs (docs/isolation.md); sshpass: the connector's password logins (the OEM script family,
 * freshly booted boards); ca-certificates: the CA store the agents trust for an https server
 * (docs/security.md).
 */
export const UNIT_PACKAGES = ['supervisor', 'git', 'openssh-client', 'bubblewrap', 'acl', 'sshpass', 'ca-certificates'];

/**
 * A fresh machine's dpkg lock is often held (cloud-init, unattended-upgrades): apt-get waits this
 * long for it, and a call that still finds it held is tried again, a bounded number of times.
 */
export const APT_LOCK_TIMEOUT_S = 300;
export interface AptRetry {
  attempts: number;
  delayMs: number;
}
const APT_RETRY: AptRetry = { attempts: 3, delayMs: 30_000 };
/** apt's words for a lock held by another process (dpkg frontend, dpkg, or the lists). */
const LOCK_HELD = /Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the administration )?directory/;

function lockHeld(error: unknown): boolean {
  return error instanceof CommandError && LOCK_HELD.test(`${error.stderr}\n${error.stdout}`);
}

async function aptGet(run: Runner, args: readonly string[], retry: AptRetry): Promise<void> {
  const env = { DEBIAN_FRONTEND: 'noninteractive', PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const argv = ['-o', `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_S}`, ...args];
  for (let attempt = 1; ; attempt++) {
    try {
      await run('apt-get', argv, { env });
      return;
    } catch (error) {
      // Anything but a held lock (no such package, a broken archive) will not pass on a retry.
      if (attempt >= retry.attempts || !lockHeld(error)) throw error;
      await new Promise((r) => setTimeout(r, retry.delayMs));
    }
  }
}

export async function installPackages(run: Runner, names: readonly string[], retry: AptRetry = APT_RETRY): Promise<void> {
  await aptGet(run, ['update', '-q'], retry);
  await aptGet(run, ['install', '-y', '-q', ...names], retry);
}
