/**
 * Firmware from LVFS, as upstream updates HP, Dell and Lenovo machines: fwupd on the device, over
 * SSH as the test user with sudo. Every updatable component whose newest LVFS release is an
 * upgrade is upgraded (`fwupdmgr upgrade <id> -y --no-reboot-check`); when one was, the device is
 * rebooted and fwupd's results say whether each landed.
 */
import { z } from 'zod';
import { describeTarget, testUsername, type PhaseContext } from '../phases';
import { sshRun, type SshResult } from '../ssh';
import { pollUntil, shellWords } from '../steps';
import { quoted } from '../../common/text';
import type { SshUser } from '../validate';
import { FirmwareUpdateError } from './error';

/** Upstream's limits: 30 s a command, 120 s for `apt update`. */
const COMMAND_TIMEOUT_MS = 30_000;
const APT_UPDATE_TIMEOUT_MS = 120_000;
/** fwupd's device ids are SHA-1 hex; only such an id, from the device's own answer, reaches a command line. */
const DEVICE_ID = /^[0-9a-f]{40}$/;
/** fwupd's FwupdUpdateState, by number. */
const UPDATE_STATES = ['UNKNOWN', 'PENDING', 'SUCCESS', 'FAILED', 'NEEDS_REBOOT', 'FAILED_TRANSIENT'];
const UPDATE_STATE_SUCCESS = 2;

const releaseSchema = z.object({ Version: z.string(), Flags: z.array(z.string()).default([]) }).passthrough();
const fwupdDeviceSchema = z
  .object({ DeviceId: z.string(), Name: z.string().optional(), Version: z.string().optional(), Flags: z.array(z.string()).default([]), Releases: z.array(releaseSchema).optional() })
  .passthrough();
const devicesSchema = z.object({ Devices: z.array(fwupdDeviceSchema).default([]) }).passthrough();
const resultsSchema = z.object({ Releases: z.array(releaseSchema).min(1), UpdateState: z.number().int() }).passthrough();
type FwupdDevice = z.output<typeof fwupdDeviceSchema>;

/** The JSON document in a command's output (ssh gives stdout and stderr together). */
function jsonIn(output: string): unknown {
  const start = output.indexOf('{');
  const end = output.lastIndexOf('}');
  try {
    return start < 0 ? undefined : JSON.parse(output.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

export interface LvfsTiming {
  rebootSeconds: number;
  pollSeconds: number;
}

export class LvfsDevice {
  private readonly user: SshUser;
  private components: FwupdDevice[] = [];
  /** The version each component was told to go to. */
  private readonly targets = new Map<string, string>();

  constructor(
    private readonly ctx: PhaseContext,
    private readonly timing: LvfsTiming,
  ) {
    this.user = testUsername(ctx);
  }

  private say(line: string): void {
    this.ctx.print(`firmware: ${line}`);
  }

  private run(words: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<SshResult> {
    return sshRun(this.ctx.device, this.user, shellWords(words), undefined, timeoutMs);
  }

  /** A command whose failure ends the update. */
  private async must(words: readonly string[]): Promise<string> {
    const result = await this.run(words);
    if (result.exitCode !== 0) throw new FirmwareUpdateError(`${quoted(words.join(' '))} failed on ${describeTarget(this.ctx, this.user)} (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
    return result.output;
  }

  /** Installs fwupd, refreshes LVFS's metadata, and reads the updatable components and their releases. */
  async readComponents(): Promise<void> {
    await this.run(['sudo', 'apt', 'update'], APT_UPDATE_TIMEOUT_MS);
    await this.must(['sudo', 'apt', 'install', '-y', 'fwupd']);
    this.say(`fwupd version: ${quoted((await this.must(['sudo', 'fwupdmgr', '--version'])).trim())}`);
    await this.must(['sudo', 'fwupdmgr', 'refresh', '--force']);
    const parsed = devicesSchema.safeParse(jsonIn(await this.must(['sudo', 'fwupdmgr', 'get-devices', '--json'])));
    if (!parsed.success) throw new FirmwareUpdateError('fwupdmgr get-devices printed no device list');
    this.components = parsed.data.Devices.filter((device) => device.Flags.includes('updatable'));
    for (const component of this.components) this.say(describeComponent(component));
  }

  /** Upgrades each component whose newest release is an upgrade; true when one was (a reboot is due). */
  async upgrade(): Promise<boolean> {
    let upgraded = false;
    for (const component of this.components) {
      const latest = component.Releases?.[0];
      const name = quoted(componentName(component));
      if (!latest) continue;
      if (component.Version === latest.Version) this.say(`${name} has the latest firmware LVFS has`);
      else if (!latest.Flags.includes('is-upgrade')) this.say(`${name}: LVFS's newest release ${quoted(latest.Version)} is not an upgrade`);
      else if (!DEVICE_ID.test(component.DeviceId)) this.say(`${name}: skipped, its device id ${quoted(component.DeviceId)} is not fwupd's (40 hex digits)`);
      else upgraded = (await this.upgradeOne(component, latest.Version)) || upgraded;
    }
    return upgraded;
  }

  private async upgradeOne(component: FwupdDevice, version: string): Promise<boolean> {
    const name = quoted(componentName(component));
    this.say(`${name}: upgrading to ${quoted(version)}`);
    this.targets.set(component.DeviceId, version);
    const result = await this.run(['sudo', 'fwupdmgr', 'upgrade', component.DeviceId, '-y', '--no-reboot-check']);
    if (result.exitCode === 0) return true;
    this.say(`${name}: the upgrade to ${quoted(version)} failed (exit ${result.exitCode}): ${quoted(result.output.trim())}`);
    return false;
  }

  private async answers(): Promise<boolean> {
    return (await this.run(['true'])).exitCode === 0;
  }

  /** Reboots the device (the firmware is flashed on the way) and waits until it has gone down and answers again. */
  async reboot(): Promise<void> {
    const { rebootSeconds, pollSeconds } = this.timing;
    this.say(`rebooting ${describeTarget(this.ctx, this.user)}`);
    await this.run(['sudo', 'reboot']);
    const down = await pollUntil(this.ctx, () => this.answers(), (up) => !up, { seconds: rebootSeconds, everySeconds: Math.min(1, pollSeconds) });
    if (!down.done) throw new FirmwareUpdateError(`${describeTarget(this.ctx, this.user)} did not go down for the reboot within ${rebootSeconds}s`);
    const up = await pollUntil(this.ctx, () => this.answers(), (answered) => answered, { seconds: rebootSeconds, everySeconds: pollSeconds });
    if (!up.done) throw new FirmwareUpdateError(`Failed to SSH to ${describeTarget(this.ctx, this.user)} within ${rebootSeconds}s after the reboot`);
    this.say(`${describeTarget(this.ctx, this.user)} is back`);
  }

  /** fwupd's result for each component upgraded: its release is the target and its state SUCCESS. */
  async upgradesLanded(): Promise<boolean> {
    let landed = true;
    for (const component of this.components) {
      const target = this.targets.get(component.DeviceId);
      if (target === undefined) continue;
      const name = quoted(componentName(component));
      const results = resultsSchema.safeParse(jsonIn(await this.must(['sudo', 'fwupdmgr', 'get-results', component.DeviceId, '--json'])));
      if (!results.success) {
        this.say(`${name}: fwupd has no result for it: cannot tell whether the firmware landed`);
        landed = false;
      } else if (results.data.Releases[0]?.Version === target && results.data.UpdateState === UPDATE_STATE_SUCCESS) {
        this.say(`${name}: firmware ${quoted(component.Version ?? '')} -> ${quoted(target)}`);
      } else {
        const error = typeof results.data['UpdateError'] === 'string' ? results.data['UpdateError'] : '';
        this.say(`${name}: ${UPDATE_STATES[results.data.UpdateState] ?? `state ${results.data.UpdateState}`}: ${quoted(error)}`);
        landed = false;
      }
    }
    return landed;
  }
}

function componentName(component: FwupdDevice): string {
  return component.Name ?? component.DeviceId;
}

/** "<name>: current version v - LVFS upgrades: a, b - LVFS downgrades: c", as upstream lists them. */
function describeComponent(component: FwupdDevice): string {
  const parts = [`${quoted(componentName(component))}: current version ${quoted(component.Version ?? '')}`];
  if (!component.Releases) return `${parts[0]} - no available firmware on LVFS`;
  const versions = (flag: string) => component.Releases?.filter((release) => release.Flags.includes(flag)).map((release) => quoted(release.Version)) ?? [];
  const upgrades = versions('is-upgrade');
  const downgrades = versions('is-downgrade');
  if (upgrades.length > 0) parts.push(`LVFS upgrades: ${upgrades.join(', ')}`);
  if (downgrades.length > 0) parts.push(`LVFS downgrades: ${downgrades.join(', ')}`);
  return parts.join(' - ');
}
