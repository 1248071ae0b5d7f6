/**
 * Upstream's password logins: `sshpass -p <password> ssh-copy-id …` to put the agent's key on a
 * freshly booted image, and `sshpass … ssh` for checks made before the key is there. Here sshpass
 * takes the password from its environment (-e, SSHPASS): never on a command line, never in a file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testUsername, type PhaseContext } from '../../phases';
import { agentPublicKey, sshConfigText } from '../../ssh';
import { runCommand, type CommandResult } from '../../steps';
import type { SshHost } from '../../validate';
import { testPassword, type Credentials } from './config';

export interface PasswordLogin extends Credentials {
  host: SshHost;
  port?: number | undefined;
}

/** Runs sshpass with `args` after `-e`, given an ssh config file (the operator's, then ours) for the duration. */
async function sshpass(args: (configFile: string) => string[], password: string, timeoutMs: number): Promise<CommandResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-sshpass-'));
  try {
    const configFile = path.join(dir, 'config');
    fs.writeFileSync(configFile, sshConfigText(), { mode: 0o600 });
    return await runCommand(['sshpass', '-e', ...args(configFile)], { timeoutMs, env: { ...process.env, SSHPASS: password } });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function portArgs(login: PasswordLogin): string[] {
  return login.port === undefined ? [] : ['-p', String(login.port)];
}

/**
 * ssh-copy-id of the agent's key, logging in with the password when the key is not taken yet.
 * `force` (netboot's -f) copies it even when it is there.
 */
export function copyIdWithPassword(login: PasswordLogin, options: { force?: boolean; timeoutMs: number }): Promise<CommandResult> {
  agentPublicKey(`${login.user}@${login.host}`);
  const publicKey = path.join(process.env['HOME'] ?? '', '.ssh', 'id_rsa.pub');
  const force = options.force ? ['-f'] : [];
  return sshpass((config) => ['ssh-copy-id', ...force, '-i', publicKey, '-F', config, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', ...portArgs(login), `${login.user}@${login.host}`], login.password, options.timeoutMs);
}

/** Runs `command` (already quoted for the remote shell) logging in with the password. */
export function runWithPassword(login: PasswordLogin, command: string, timeoutMs: number): Promise<CommandResult> {
  return sshpass((config) => ['ssh', '-F', config, ...portArgs(login), '-l', login.user, '--', login.host, command], login.password, timeoutMs);
}

/** The device's own login as the job's test user, with test_data.test_password or the type's default password. */
export function testImageLogin(ctx: PhaseContext, defaultPassword: string): PasswordLogin {
  return { user: testUsername(ctx), password: testPassword(ctx.job, defaultPassword), host: ctx.device.device_ip, port: ctx.device.ssh_port };
}

/** One provisioning of a board: the phase, the type's config, and the test image's login. */
export interface BoardRun<Config> {
  ctx: PhaseContext;
  config: Config;
  login: PasswordLogin;
}
