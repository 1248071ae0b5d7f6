/**
 * apt-get on a unit waits for dpkg's lock (a fresh machine's cloud-init or unattended-upgrades
 * holds it) and tries again, a bounded number of times, when it is still held. A fake apt-get on
 * PATH fails its first calls as apt does when the lock is taken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCommand } from '../../src/common/exec';
import { APT_LOCK_TIMEOUT_S, installPackages } from '../../src/charm/packages';
import { tempDir } from '../helpers/tmp';

const LOCK_MESSAGE = 'E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)';
const NO_RETRY_WAIT = { attempts: 3, delayMs: 0 };

/** A fake apt-get that fails its first `failures` calls with `message`; returns its call log. */
function fakeAptGet(failures: number, message = LOCK_MESSAGE): string {
  const dir = tempDir('fake-apt');
  const calls = path.join(dir, 'calls');
  fs.writeFileSync(
    path.join(dir, 'apt-get'),
    `#!/bin/sh\necho "$*" >>${calls}\nif [ "$(wc -l <${calls})" -le ${failures} ]; then echo "${message}" >&2; exit 100; fi\n`,
    { mode: 0o755 },
  );
  process.env['PATH'] = `${dir}:${originalPath}`;
  return calls;
}

const originalPath = process.env['PATH'];
afterEach(() => {
  process.env['PATH'] = originalPath;
});

const callsIn = (log: string) => fs.readFileSync(log, 'utf8').trim().split('\n');

describe('apt-get on a unit', () => {
  it('waits for the dpkg lock on every call, and tries again while it is still held', async () => {
    const log = fakeAptGet(2);
    await installPackages(runCommand, ['supervisor', 'git'], NO_RETRY_WAIT);
    const lockOption = `-o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_S}`;
    expect(callsIn(log)).toEqual([`${lockOption} update -q`, `${lockOption} update -q`, `${lockOption} update -q`, `${lockOption} install -y -q supervisor git`]);
  });

  it('gives up after a bounded number of tries, with apt-get\'s reason', async () => {
    const log = fakeAptGet(10);
    await expect(installPackages(runCommand, ['git'], NO_RETRY_WAIT)).rejects.toThrow(/apt-get .*update -q failed \(exit 100\): E: Could not get lock/);
    expect(callsIn(log)).toHaveLength(NO_RETRY_WAIT.attempts);
  });

  it('does not try again what a retry cannot fix (an unknown package)', async () => {
    const log = fakeAptGet(1, 'E: Unable to locate package nosuchpackage');
    await expect(installPackages(runCommand, ['nosuchpackage'], NO_RETRY_WAIT)).rejects.toThrow(/Unable to locate package/);
    expect(callsIn(log)).toHaveLength(1);
  });

  it('waits between tries', async () => {
    fakeAptGet(1);
    const started = Date.now();
    await installPackages(runCommand, ['git'], { attempts: 2, delayMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});
