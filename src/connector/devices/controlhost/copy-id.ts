/**
 * Upstream's last step of control_host_iot: the agents' key is copied to the provisioned device
 * with `ssh-copy-id`, logging in with the job's password (upstream: sshpass), tried 10 times a
 * minute apart. Here the password reaches ssh through SSH_ASKPASS, a script of our own that
 * prints it from the environment of that one process: never on a command line, never in a file.
 * A device that already takes the key is left alone.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConnectorError } from '../../errors';
import { describeTarget, type PhaseContext } from '../../phases';
import { sshConfigText, sshRun } from '../../ssh';
import { runCommand, type CommandResult } from '../../steps';
import { quoted } from '../../../common/text';
import type { SshUser } from '../../validate';

const ATTEMPTS = 10;
const ATTEMPT_TIMEOUT_MS = 30_000;
const PAUSE_MS = 60_000;
const PASSWORD_ENV = 'TESTFLINGER_DEVICE_PASSWORD';
const ASKPASS = `#!/bin/sh\nprintf '%s\\n' "$${PASSWORD_ENV}"\n`;

function copyIdArgs(ctx: PhaseContext, user: SshUser, configFile: string, publicKey: string): string[] {
  const port = ctx.device.ssh_port === undefined ? [] : ['-p', String(ctx.device.ssh_port)];
  return ['ssh-copy-id', '-f', '-i', publicKey, '-F', configFile, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', ...port, `${user}@${ctx.device.device_ip}`];
}

/**
 * Runs `use` with a one-shot `ssh-copy-id` of the agents' key to the device as `user`, logging in
 * with `password` (through SSH_ASKPASS) where the key is not accepted yet.
 */
export async function withCopyId<T>(ctx: PhaseContext, user: SshUser, password: string, use: (copyId: (timeoutMs: number) => Promise<CommandResult>) => Promise<T>): Promise<T> {
  const publicKey = path.join(process.env['HOME'] ?? '', '.ssh', 'id_rsa.pub');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-copy-id-'));
  try {
    const configFile = path.join(dir, 'config');
    const askpass = path.join(dir, 'askpass');
    fs.writeFileSync(configFile, sshConfigText(), { mode: 0o600 });
    fs.writeFileSync(askpass, ASKPASS, { mode: 0o700 });
    const env = { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: process.env['DISPLAY'] ?? ':0', [PASSWORD_ENV]: password };
    return await use((timeoutMs) => runCommand(copyIdArgs(ctx, user, configFile, publicKey), { timeoutMs, env }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function copyAgentKey(ctx: PhaseContext, user: SshUser, password: string): Promise<void> {
  if ((await sshRun(ctx.device, user, 'true', undefined, 60_000)).exitCode === 0) {
    ctx.print(`${describeTarget(ctx, user)} already takes the agents' key`);
    return;
  }
  ctx.print("Copying the agent's SSH public key to the DUT.");
  const copied = await withCopyId(ctx, user, password, async (copyId) => {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const result = await copyId(ATTEMPT_TIMEOUT_MS);
      if (result.exitCode === 0) return true;
      ctx.print(`Error copying ssh key to device (attempt ${attempt} of ${ATTEMPTS}): ${quoted(result.output.trim())}`);
      if (attempt < ATTEMPTS) await ctx.sleep(PAUSE_MS);
    }
    return false;
  });
  if (!copied) throw new ConnectorError(`Cannot copy the agent's SSH key to the DUT (${describeTarget(ctx, user)})`);
}
