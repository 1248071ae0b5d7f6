/**
 * A real sshd on 127.0.0.1, run by the test as the invoking user with its own config, host key
 * and port. Logins get HOME in the test's dir (a ForceCommand wrapper), so keys installed on
 * the "device" land there and never in the real home.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { eventually, tempDir } from './tmp';

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

export function sshKeygen(file: string): KeyPair {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test', '-f', file]);
  return { privateKey: file, publicKey: fs.readFileSync(`${file}.pub`, 'utf8').trim() };
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

export interface SshdOptions {
  /** Listen here instead of a free port found now (a "device" that comes up on a port promised earlier). */
  port?: number;
  /** Put first on PATH in every session: stand-in commands for the device (sudo, reboot, ...). */
  sessionPath?: string;
  /**
   * Let in this system user (./password-user.ts), by password (its own, from the system's shadow
   * file) or by an authorized key, instead of the invoking user: the test dir is opened up and the
   * home made its.
   */
  passwordLoginUser?: string;
}

export class TestSshd {
  readonly dir = tempDir('sshd');
  readonly deviceHome = path.join(this.dir, 'device-home');
  readonly user = os.userInfo().username;
  port = 0;
  private child: ChildProcess | undefined;

  async start(authorized: string[], options: SshdOptions = {}): Promise<this> {
    this.port = options.port ?? (await freePort());
    fs.mkdirSync(path.join(this.deviceHome, '.ssh'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(this.deviceHome, '.ssh', 'authorized_keys'), `${authorized.join('\n')}\n`, { mode: 0o600 });
    const loginUser = options.passwordLoginUser ?? this.user;
    if (options.passwordLoginUser) this.openTo(options.passwordLoginUser);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(this.dir, 'host_key')]);
    const wrapper = path.join(this.dir, 'session.sh');
    const pathLine = options.sessionPath ? `export PATH=${options.sessionPath}:$PATH\n` : '';
    fs.writeFileSync(wrapper, `#!/bin/sh\nexport HOME=${this.deviceHome}\n${pathLine}cd "$HOME"\nexec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n`, { mode: 0o755 });
    const config = path.join(this.dir, 'sshd_config');
    fs.writeFileSync(
      config,
      [
        `Port ${this.port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${path.join(this.dir, 'host_key')}`,
        `PidFile ${path.join(this.dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${path.join(this.deviceHome, '.ssh', 'authorized_keys')}`,
        `PasswordAuthentication ${options.passwordLoginUser ? 'yes' : 'no'}`,
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'PermitRootLogin prohibit-password',
        'StrictModes no',
        'UsePAM no',
        `ForceCommand ${wrapper}`,
        `AllowUsers ${loginUser}`,
        '',
      ].join('\n'),
    );
    await this.listen();
    return this;
  }

  /** The login user must reach its session wrapper and own its home. */
  private openTo(user: string): void {
    const id = (flag: string) => Number(execFileSync('id', [flag, '--', user], { encoding: 'utf8' }).trim());
    fs.chmodSync(this.dir, 0o755);
    execFileSync('chown', ['-R', `${id('-u')}:${id('-g')}`, '--', this.deviceHome]);
  }

  /** Runs sshd on the config written by start() and waits until it accepts connections. */
  protected async listen(): Promise<void> {
    const config = path.join(this.dir, 'sshd_config');
    if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true });
    this.child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let errors = '';
    this.child.stderr?.on('data', (d: Buffer) => (errors += d.toString()));
    await eventually(
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.createConnection(this.port, '127.0.0.1');
          s.once('connect', () => (s.destroy(), resolve(true)));
          s.once('error', () => resolve(false));
        }),
      `sshd on port ${this.port} (${errors})`,
      10000,
    );
  }

  /** Stops sshd and waits until it has exited (its port is free again). */
  async stopAndWait(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  /** A reboot as the network sees it: sshd goes away, then comes back on the same port and host key. */
  async restart(downMs = 0): Promise<void> {
    await this.stopAndWait();
    await new Promise((r) => setTimeout(r, downMs));
    await this.listen();
  }

  /**
   * An ssh client config block that reaches this sshd as `alias`, its port named only here (for
   * tests of clients that must take the port from the ssh config, not the command line).
   */
  clientConfigBlock(alias = '127.0.0.1'): string {
    return `Host ${alias}\n  HostName 127.0.0.1\n  Port ${this.port}\n`;
  }

  stop(): void {
    this.child?.kill('SIGTERM');
  }
}
