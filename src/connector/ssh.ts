/**
 * SSH to the device under test. The key and config are named explicitly from $HOME, because ssh
 * itself reads the passwd home, not $HOME, and the sandbox's keys live elsewhere.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DeviceConfig } from './config';
import { ConnectorError } from './errors';
import type { SshUser } from './validate';

export interface SshResult {
  exitCode: number;
  output: string;
}

/**
 * Our defaults for reaching devices (reinstalled devices change host keys). They go after the
 * operator's config (the charm's ssh-config option), because ssh keeps the first value it reads
 * for a setting: so every setting the operator made, for all hosts or one, wins over ours.
 */
const DEFAULT_SETTINGS = ['StrictHostKeyChecking no', 'UserKnownHostsFile /dev/null', 'ConnectTimeout 10', 'LogLevel ERROR'];

function homeSshFile(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const home = env['HOME'];
  const file = home ? path.join(home, '.ssh', name) : undefined;
  return file && fs.existsSync(file) ? file : undefined;
}

/** The config ssh is given: the operator's, included first, then our defaults. */
export function sshConfigText(env: NodeJS.ProcessEnv = process.env): string {
  const operator = homeSshFile(env, 'config');
  const include = operator ? `Include "${operator}"\n` : '';
  return `${include}Host *\n${DEFAULT_SETTINGS.map((setting) => `  ${setting}\n`).join('')}`;
}

/**
 * ssh's arguments up to and including the destination; the remote command goes after them.
 * The user goes in `-l` and the host after `--`, so neither can be read as an option; a port is
 * given only when the device config sets one, so the ssh config's Port and Host blocks hold.
 * BatchMode is the one setting forced: there is nobody to answer a prompt.
 */
export function sshArgs(device: DeviceConfig, user: SshUser, configFile: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const key = homeSshFile(env, 'id_rsa');
  const port = device.ssh_port === undefined ? [] : ['-p', String(device.ssh_port)];
  return ['-F', configFile, '-o', 'BatchMode=yes', ...(key ? ['-i', key] : []), ...port, '-l', user, '--', device.device_ip];
}

/** The agents' public key ($HOME/.ssh/id_rsa.pub), which `system` must accept after provisioning. */
export function agentPublicKey(system: string): string {
  const file = path.join(process.env['HOME'] ?? '', '.ssh', 'id_rsa.pub');
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConnectorError(`cannot read the agent's public key ${file}, which ${system} must accept: ${(error as Error).message}`);
  }
}

/** Runs a command on the device; `input` is its stdin. A command still running after `timeoutMs` is killed (exit 124). */
export function sshRun(device: DeviceConfig, user: SshUser, command: string, input?: string | Buffer, timeoutMs = 10 * 60_000): Promise<SshResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-ssh-'));
  const configFile = path.join(dir, 'config');
  fs.writeFileSync(configFile, sshConfigText(), { mode: 0o600 });
  return new Promise<SshResult>((resolve) => {
    const child = spawn('ssh', [...sshArgs(device, user, configFile), command], { stdio: ['pipe', 'pipe', 'pipe'] });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (error) => resolve({ exitCode: 255, output: error.message }));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(timedOut ? { exitCode: 124, output: `${output}(timed out after ${Math.round(timeoutMs / 1000)}s)` } : { exitCode: code ?? 255, output });
    });
    // ssh may exit (no connection) before reading its input: that EPIPE is not our failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  }).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
}
