/** The phases every device type shares: test, reserve, allocate, and the helpers they use. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DeviceConfig, JobFile } from './config';
import { ConnectorError } from './errors';
import { sshArgs, sshRun } from './ssh';

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

export function writeDeviceInfo(ctx: PhaseContext): void {
  const info = { device_info: { device_ip: ctx.device.device_ip, ...(ctx.device.agent_name ? { agent_name: ctx.device.agent_name } : {}) } };
  fs.writeFileSync(path.join(ctx.runDir, 'device-info.json'), `${JSON.stringify(info, null, 2)}\n`);
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

/** The key servers for `lp:` and `gh:` ids; overridable so tests stay on loopback. */
function keyUrl(id: string): string | undefined {
  const [kind, user] = id.split(':', 2);
  if (!user) return undefined;
  if (kind === 'lp') return `${process.env['TESTFLINGER_LP_KEYS_URL'] ?? 'https://launchpad.net'}/~${user}/+sshkeys`;
  if (kind === 'gh') return `${process.env['TESTFLINGER_GH_KEYS_URL'] ?? 'https://github.com'}/${user}.keys`;
  return undefined;
}

const PUBLIC_KEY = /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9-]+@openssh\.com) [A-Za-z0-9+/=]+/;

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
      print(`Cannot use ssh key "${id}": neither a public key nor an lp:/gh: id`);
      continue;
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(15000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const found = (await res.text()).split('\n').map((l) => l.trim()).filter((l) => PUBLIC_KEY.test(l));
      if (found.length === 0) throw new Error('no keys published');
      keys.push(...found);
    } catch (error) {
      print(`Cannot fetch ssh keys for ${id} from ${url}: ${(error as Error).message}`);
    }
  }
  return keys;
}

export async function installKeys(ctx: PhaseContext, user: string, keys: readonly string[]): Promise<void> {
  const script = 'umask 077; mkdir -p ~/.ssh; touch ~/.ssh/authorized_keys; while read -r key; do grep -qxF "$key" ~/.ssh/authorized_keys || echo "$key" >> ~/.ssh/authorized_keys; done';
  const result = await sshRun(ctx.device, user, script, `${keys.join('\n')}\n`);
  if (result.exitCode !== 0) throw new ConnectorError(`installing ssh keys on ${user}@${ctx.device.device_ip} failed: ${result.output.trim()}`);
}

/** Installs the requested keys, says how to connect, then holds the device for the reservation. */
export const runReserve: PhaseFn = async (ctx) => {
  const data = ctx.job.reserve_data ?? { ssh_keys: [] };
  const user = ctx.job.test_data?.test_username ?? ctx.device.test_username;
  const keys = await resolveKeys(data.ssh_keys, ctx.print);
  if (keys.length > 0) await installKeys(ctx, user, keys);
  const asked = Number(data.timeout ?? 3600);
  const seconds = Math.min(Number.isFinite(asked) && asked > 0 ? asked : 3600, ctx.device.reserve_timeout_max);
  const port = ctx.device.ssh_port === 22 ? '' : ` -p ${ctx.device.ssh_port}`;
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

/** Waits (bounded) until the device answers over SSH as the test user. */
export async function waitForSsh(ctx: PhaseContext, user: string): Promise<void> {
  const deadline = Date.now() + ctx.device.provision_ssh_wait * 1000;
  let last = '';
  for (let attempt = 1; ; attempt++) {
    const result = await sshRun(ctx.device, user, 'true');
    if (result.exitCode === 0) {
      ctx.print(`${user}@${ctx.device.device_ip} answers over SSH`);
      return;
    }
    last = result.output.trim();
    if (Date.now() >= deadline) break;
    ctx.print(`attempt ${attempt}: ${user}@${ctx.device.device_ip} not answering yet (${last || `exit ${result.exitCode}`})`);
    await ctx.sleep(Math.min(5000, Math.max(0, deadline - Date.now())));
  }
  throw new ConnectorError(`${user}@${ctx.device.device_ip}:${ctx.device.ssh_port} did not answer over SSH within ${ctx.device.provision_ssh_wait}s: ${last}`);
}

export { sshArgs };
