/**
 * Commands on a host other than the device's own login: dragonboard's master image, cm3's
 * control host. Key login as the agent, like every other SSH step of the connector.
 */
import { ConnectorError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { sshRun, type SshResult } from '../../ssh';
import { quoted } from '../../../common/text';
import type { SshHost, SshUser } from '../../validate';

export interface SshTarget {
  host: SshHost;
  /** Unset: the ssh config's port for the host, else 22. */
  port?: number | undefined;
  user: SshUser;
}

export function describeSshTarget(target: SshTarget): string {
  return `${quoted(`${target.user}@${target.host}`)}${target.port === undefined ? '' : ` (port ${target.port})`}`;
}

/** Runs `command` (already quoted for the remote shell) on the target; its exit code is the caller's to judge. */
export function runOn(ctx: PhaseContext, target: SshTarget, command: string, timeoutMs: number, input?: string): Promise<SshResult> {
  const { ssh_port: _devicePort, ...device } = ctx.device;
  return sshRun({ ...device, device_ip: target.host, ...(target.port === undefined ? {} : { ssh_port: target.port }) }, target.user, command, input, timeoutMs);
}

/** Runs `command` and returns its output; one that exits non-zero or runs out of time fails with `why` and the output. */
export async function checkOn(ctx: PhaseContext, target: SshTarget, command: string, timeoutMs: number, why: string, input?: string): Promise<string> {
  const result = await runOn(ctx, target, command, timeoutMs, input);
  if (result.exitCode === 124) throw new ConnectorError(`${why}: ${quoted(command)} on ${describeSshTarget(target)} ran over ${Math.round(timeoutMs / 1000)}s`);
  if (result.exitCode !== 0) throw new ConnectorError(`${why}: ${quoted(command)} on ${describeSshTarget(target)} failed (exit ${result.exitCode}): ${quoted(result.output.trim(), 400)}`);
  return result.output;
}
