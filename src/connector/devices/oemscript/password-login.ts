/**
 * Upstream's OEM script connectors reach a device that does not take the agents' key by logging
 * in with the job's password: `sshpass` answers ssh-copy-id's password prompt, and the agents'
 * key is installed for the test user. Upstream passes the password as `sshpass -p <password>`,
 * on a command line; here it reaches sshpass in its environment (`sshpass -e`, SSHPASS), for that
 * one process only: never in argv, a file or the output.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import type { JobFile } from '../../config';
import { JobError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { sshConfigText } from '../../ssh';
import { runCommand, type CommandResult } from '../../steps';
import type { SshUser } from '../../validate';

/** Upstream's default when the job gives no test_password. */
const DEFAULT_PASSWORD = 'ubuntu';
/** Upstream's limit for one ssh-copy-id. */
const COPY_TIMEOUT_MS = 60_000;

const passwordSchema = z.string().min(1).max(1024).refine((p) => !p.includes('\0'), 'a password without NUL');

/** test_data.test_password, else upstream's default; a password sshpass cannot pass is the job's fault. */
export function jobPassword(job: JobFile): string {
  const given = (job.test_data as Record<string, unknown> | null | undefined)?.['test_password'];
  if (given === undefined || given === null) return DEFAULT_PASSWORD;
  const parsed = passwordSchema.safeParse(given);
  if (!parsed.success) throw new JobError('testflinger.json: test_data.test_password: must be a non-empty string without NUL');
  return parsed.data;
}

function copyIdArgv(ctx: PhaseContext, user: SshUser, configFile: string): string[] {
  const publicKey = path.join(process.env['HOME'] ?? '', '.ssh', 'id_rsa.pub');
  const port = ctx.device.ssh_port === undefined ? [] : ['-p', String(ctx.device.ssh_port)];
  // -f: called only once the key was refused, so there is nothing to skip.
  return ['sshpass', '-e', 'ssh-copy-id', '-f', '-i', publicKey, '-F', configFile, ...port, `${user}@${ctx.device.device_ip}`];
}

/** Logs in as `user` with `password` and installs the agents' public key; the result says how it went. */
export async function copyKeyWithPassword(ctx: PhaseContext, user: SshUser, password: string): Promise<CommandResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-sshpass-'));
  try {
    const configFile = path.join(dir, 'config');
    fs.writeFileSync(configFile, sshConfigText(), { mode: 0o600 });
    return await runCommand(copyIdArgv(ctx, user, configFile), { timeoutMs: COPY_TIMEOUT_MS, env: { ...process.env, SSHPASS: password } });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
