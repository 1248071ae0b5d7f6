/** The phases every device type shares: test, reserve, allocate, and the helpers they use. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEVICE_INFO_FILE, GH_KEYS_URL_ENV, LP_KEYS_URL_ENV } from '../common/contract';
import type { DeviceConfig, JobFile } from './config';
import { ConnectorError } from './errors';
import { sshRun } from './ssh';
import { quoted } from '../common/text';
import type { SshUser } from './validate';

export interface PhaseContext {
  device: DeviceConfig;
  job: JobFile;
  /** The job's run directory (the connector's cwd). */
  runDir: string;
  print: (line: string) => void;
  sleep: (ms: number) => Promise<void>;
}

/** Phase functions return the exit code the agent records. */
export type PhaseFn = (ctx: PhaseContext) => Promise<number>;

/** The job's test user, else the device's: the user every SSH login of the job is made as. */
export function testUsername(ctx: PhaseContext): SshUser {
  return ctx.job.test_data?.test_username ?? ctx.device.test_username;
}

/** How messages name an SSH target: quoted, with the port only when the device config sets one. */
export function describeTarget(ctx: PhaseContext, user: SshUser): string {
  const port = ctx.device.ssh_port === undefined ? '' : ` (port ${ctx.device.ssh_port})`;
  return `${quoted(`${user}@${ctx.device.device_ip}`)}${port}`;
}

export function writeDeviceInfo(ctx: PhaseContext): void {
  const info = { device_info: { device_ip: ctx.device.device_ip, ...(ctx.device.agent_name ? { agent_name: ctx.device.agent_name } : {}) } };
  fs.writeFileSync(path.join(ctx.runDir, DEVICE_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
}

/** Runs the job's test_cmds on this host with DEVICE_IP and the device's env; streams output. */
export const runTest: PhaseFn = async (ctx) => {
  const cmds = ctx.job.test_data?.test_cmds;
  if (cmds === undefined || (Array.isArray(cmds) && cmds.length === 0)) {
    ctx.print('No test_cmds in test_data; nothing to run');
    return 0;
  }
  const script = path.join(ctx.runDir, 'tf-test-commands.sh');
  fs.writeFileSync(script, `${Array.isArray(cmds) ? cmds.join('\n') : cmds}\n`, { mode: 0o755 });
  const env: NodeJS.ProcessEnv = { ...process.env, ...ctx.device.env, ...(ctx.job.test_data?.env ?? {}), DEVICE_IP: ctx.device.device_ip };
  return new Promise((resolve) => {
    const child = spawn('/bin/bash', [script], { cwd: ctx.runDir, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (error) => {
      ctx.print(`cannot run test_cmds: ${error.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  });
};

/** Account names on the key servers; nothing here needs escaping in a URL path. */
const KEY_ACCOUNT = /^[A-Za-z0-9][A-Za-z0-9+._-]{0,63}$/;

/** The key servers for `lp:` and `gh:` ids; overridable so tests stay on loopback. */
function keyUrl(id: string): string | undefined {
  const colon = id.indexOf(':');
  const kind = id.slice(0, colon);
  const user = id.slice(colon + 1);
  if (colon < 0 || !KEY_ACCOUNT.test(user)) return undefined;
  if (kind === 'lp') return `${process.env[LP_KEYS_URL_ENV] ?? 'https://launchpad.net'}/~${user}/+sshkeys`;
  if (kind === 'gh') return `${process.env[GH_KEYS_URL_ENV] ?? 'https://github.com'}/${user}.keys`;
  return undefined;
}

/** One authorized_keys line: type, key, and an optional comment with no control characters. */
const PUBLIC_KEY = /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9-]+@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\x00-\x1f\x7f]*)?$/;

/** Literal keys pass as they are; lp:/gh: ids are fetched; what cannot be had is reported. */
export async function resolveKeys(ids: readonly string[], print: (line: string) => void): Promise<string[]> {
  const keys: string[] = [];
  for (const id of ids) {
    if (PUBLIC_KEY.test(id.trim())) {
      keys.push(id.trim());
      continue;
    }
    const url = keyUrl(id);
    if (!url) {
      print(`Cannot use ssh key ${quoted(id)}: neither a public key nor an lp:/gh: id`);
      continue;
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(15000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const found = (await res.text()).split('\n').map((l) => l.trim()).filter((l) => PUBLIC_KEY.test(l));
      if (found.length === 0) throw new Error('no keys published');
      keys.push(...found);
    } catch (error) {
      print(`Cannot fetch ssh keys for ${quoted(id)} from ${url}: ${(error as Error).message}`);
    }
  }
  return keys;
}

export async function installKeys(ctx: PhaseContext, user: SshUser, keys: readonly string[]): Promise<void> {
  const script = 'umask 077; mkdir -p ~/.ssh; touch ~/.ssh/authorized_keys; while read -r key; do grep -qxF "$key" ~/.ssh/authorized_keys || echo "$key" >> ~/.ssh/authorized_keys; done';
  const result = await sshRun(ctx.device, user, script, `${keys.join('\n')}\n`);
  if (result.exitCode !== 0) throw new ConnectorError(`installing ssh keys on ${describeTarget(ctx, user)} failed: ${quoted(result.output.trim())}`);
}

/** Installs the requested keys, says how to connect, then holds the device for the reservation. */
export const runReserve: PhaseFn = async (ctx) => {
  const data = ctx.job.reserve_data ?? { ssh_keys: [] };
  const user = testUsername(ctx);
  const keys = await resolveKeys(data.ssh_keys, ctx.print);
  if (keys.length > 0) await installKeys(ctx, user, keys);
  const asked = Number(data.timeout ?? 3600);
  const seconds = Math.min(Number.isFinite(asked) && asked > 0 ? asked : 3600, ctx.device.reserve_timeout_max);
  // The user and host passed strict patterns: the line below is a command to copy, so it stays unquoted.
  const port = ctx.device.ssh_port === undefined ? '' : ` -p ${ctx.device.ssh_port}`;
  ctx.print('*** TESTFLINGER SYSTEM RESERVED ***');
  ctx.print(`You can now connect to ${user}@${ctx.device.device_ip}${port} (ssh${port} ${user}@${ctx.device.device_ip})`);
  ctx.print(`Current time: ${new Date().toISOString()}; reservation ends in ${seconds} seconds`);
  await ctx.sleep(seconds * 1000);
  ctx.print('Reservation over');
  return 0;
};

export const runAllocate: PhaseFn = async (ctx) => {
  writeDeviceInfo(ctx);
  ctx.print(`Device ${ctx.device.device_ip} allocated`);
  return 0;
};
