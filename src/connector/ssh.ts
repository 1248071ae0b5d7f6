/**
 * SSH to the device under test. The key and config are named explicitly from $HOME, because ssh
 * itself reads the passwd home, not $HOME, and the sandbox's keys live elsewhere.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DeviceConfig } from './config';
import type { SshUser } from './validate';

export interface SshResult {
  exitCode: number;
  output: string;
}

/** Never prompt (there is nobody to answer), and take devices whose host key changed with each install. */
const FIXED_OPTIONS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR'];

function identityArgs(env: NodeJS.ProcessEnv): string[] {
  const home = env['HOME'];
  if (!home) return [];
  const args: string[] = [];
  const key = path.join(home, '.ssh', 'id_rsa');
  const config = path.join(home, '.ssh', 'config');
  if (fs.existsSync(key)) args.push('-i', key);
  if (fs.existsSync(config)) args.push('-F', config);
  return args;
}

/**
 * ssh's arguments up to and including the destination; the remote command goes after them.
 * The user goes in `-l` and the host after `--`, so neither can be read as an option; a port is
 * given only when the device config sets one, so the ssh config's Port and Host blocks hold.
 */
export function sshArgs(device: DeviceConfig, user: SshUser, env: NodeJS.ProcessEnv = process.env): string[] {
  const port = device.ssh_port === undefined ? [] : ['-p', String(device.ssh_port)];
  return [...FIXED_OPTIONS, ...port, ...identityArgs(env), '-l', user, '--', device.device_ip];
}

/** Runs a command on the device; `input` is its stdin. */
export function sshRun(device: DeviceConfig, user: SshUser, command: string, input?: string): Promise<SshResult> {
  return new Promise((resolve) => {
    const child = spawn('ssh', [...sshArgs(device, user), command], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (error) => resolve({ exitCode: 255, output: error.message }));
    child.on('close', (code) => resolve({ exitCode: code ?? 255, output }));
    // ssh may exit (no connection) before reading its input: that EPIPE is not our failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}
