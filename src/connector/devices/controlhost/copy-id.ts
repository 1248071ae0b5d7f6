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
import { runCommand } from '../../steps';
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

/** `attempts`: upstream's 10, a minute apart; 1 where upstream logs in once. */
export async function copyAgentKey(ctx: PhaseContext, user: SshUser, password: string, attempts = ATTEMPTS): Promise<void> {
  if ((await sshRun(ctx.device, user, 'true', undefined, 60_000)).exitCode === 0) {
    ctx.print(`${describeTarget(ctx, user)} already takes the agents' key`);
    return;
  }
  ctx.print("Copying the agent's SSH public key to the DUT.");
  const publicKey = path.join(process.env['HOME'] ?? '', '.ssh', 'id_rsa.pub');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-copy-id-'));
  try {
    const configFile = path.join(dir, 'config');
    const askpass = path.join(dir, 'askpass');
    fs.writeFileSync(configFile, sshConfigText(), { mode: 0o600 });
    fs.writeFileSync(askpass, ASKPASS, { mode: 0o700 });
    const env = { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: process.env['DISPLAY'] ?? ':0', [PASSWORD_ENV]: password };
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const result = await runCommand(copyIdArgs(ctx, user, configFile, publicKey), { timeoutMs: ATTEMPT_TIMEOUT_MS, env });
      if (result.exitCode === 0) return;
      ctx.print(`Error copying ssh key to device (attempt ${attempt} of ${attempts}): ${quoted(result.output.trim())}`);
      if (attempt < attempts) await ctx.sleep(PAUSE_MS);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  throw new ConnectorError(`Cannot copy the agent's SSH key to the DUT (${describeTarget(ctx, user)})`);
}
