/**
 * A real sshd on 127.0.0.1 that takes passwords: a device whose test user logs in with the job's
 * test_password (upstream's sshpass logins). The user is a real one, made for the test with
 * useradd and a password (chpasswd), so this needs root; remove() deletes it. Keys are taken
 * too (the key the connector installs with the password). Sessions get HOME in the test's dir
 * and stand-in commands first on PATH, as TestSshd's, whose running and stopping it shares.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, TestSshd, type SshdOptions } from './sshd';

export function passwordSshdUnavailable(): string | undefined {
  return process.getuid?.() === 0 ? undefined : 'password logins need a real user with a password: run as root';
}

export class PasswordSshd extends TestSshd {
  override readonly user = `tfpw${crypto.randomBytes(4).toString('hex')}`;
  readonly password = `pw-${crypto.randomBytes(6).toString('hex')}`;
  private made = false;

  /** Makes the user, with its password and an empty home in the test's dir. */
  constructor() {
    super();
    fs.chmodSync(this.dir, 0o755);
    execFileSync('useradd', ['--no-create-home', '--home-dir', this.deviceHome, '--shell', '/bin/sh', '--', this.user]);
    this.made = true;
    execFileSync('chpasswd', [], { input: `${this.user}:${this.password}\n` });
    fs.mkdirSync(path.join(this.deviceHome, '.ssh'), { recursive: true, mode: 0o700 });
  }

  /** Gives `file` (and below it) to the test user. */
  own(file: string): void {
    execFileSync('chown', ['-R', `${this.user}:`, file]);
  }

  override async start(authorized: string[], options: SshdOptions = {}): Promise<this> {
    this.port = options.port ?? (await freePort());
    fs.writeFileSync(path.join(this.deviceHome, '.ssh', 'authorized_keys'), authorized.map((key) => `${key}\n`).join(''), { mode: 0o600 });
    this.own(this.deviceHome);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(this.dir, 'host_key')]);
    const session = path.join(this.dir, 'session.sh');
    fs.writeFileSync(session, ['#!/bin/sh', `export HOME=${this.deviceHome}`, ...(options.sessionPath ? [`export PATH=${options.sessionPath}:$PATH`] : []), 'cd "$HOME"', 'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"', ''].join('\n'), { mode: 0o755 });
    const settings: [string, string | number][] = [
      ['Port', this.port],
      ['ListenAddress', '127.0.0.1'],
      ['HostKey', path.join(this.dir, 'host_key')],
      ['PidFile', path.join(this.dir, 'sshd.pid')],
      ['AuthorizedKeysFile', '%h/.ssh/authorized_keys'],
      ['PasswordAuthentication', 'yes'],
      ['PermitEmptyPasswords', 'no'],
      ['KbdInteractiveAuthentication', 'no'],
      ['StrictModes', 'no'],
      ['UsePAM', 'no'],
      ['ForceCommand', session],
      ['AllowUsers', this.user],
    ];
    fs.writeFileSync(path.join(this.dir, 'sshd_config'), settings.map(([key, value]) => `${key} ${value}\n`).join(''));
    await this.listen();
    return this;
  }

  /** Stops sshd and deletes the user (--force: a detached command of a stand-in may still be running). */
  async remove(): Promise<void> {
    await this.stopAndWait();
    if (!this.made) return;
    execFileSync('userdel', ['--force', '--', this.user], { stdio: 'ignore' });
    this.made = false;
  }
}
