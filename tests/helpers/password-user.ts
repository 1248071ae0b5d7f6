/**
 * The system user that test sshds let in by password (upstream's test_username/test_password
 * logins through sshpass): TestSshd's `passwordLoginUser`. One per test file, made on first use
 * with useradd and a fresh random password (chpasswd), and deleted after the file. A user of its
 * own per file, not one shared by name: test files running at once (jest workers, other
 * checkouts) would otherwise reset each other's password. Needs root.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { onCleanup } from './tmp';

export interface PasswordUser {
  name: string;
  password: string;
  /** Gives `file` (and everything below it) to the user: files its sessions write. */
  own(file: string): void;
}

/** Why password logins cannot be tested here, or undefined when they can. */
export function passwordUserUnavailable(): string | undefined {
  return process.getuid?.() === 0 ? undefined : 'password logins need a real user with a password: run as root';
}

let made: PasswordUser | undefined;

/** This test file's password user (the same one on every call). */
export function passwordUser(): PasswordUser {
  made ??= makePasswordUser();
  return made;
}

function makePasswordUser(): PasswordUser {
  const name = `tfpw${crypto.randomBytes(4).toString('hex')}`;
  // sshd changes to the passwd home before the session sets its own; "/" always exists.
  execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/', '--shell', '/bin/bash', '--', name]);
  // --force: a detached command of a stand-in may still run as the user.
  onCleanup(() => void execFileSync('userdel', ['--force', '--', name], { stdio: 'ignore' }));
  const password = crypto.randomBytes(12).toString('base64url');
  execFileSync('chpasswd', [], { input: `${name}:${password}\n` });
  return { name, password, own: (file) => void execFileSync('chown', ['-R', `${name}:`, '--', file]) };
}
