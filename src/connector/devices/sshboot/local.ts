/**
 * The operator's scripts from default.yaml, run on this host as upstream runs them:
 * reboot_script and dragonboard's select scripts split on spaces without a shell, netboot's
 * select scripts and post_flash_cmds through a shell.
 */
import { ConnectorError, RecoveryError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { recoveryFailed, runCommand } from '../../steps';
import { quoted } from '../../../common/text';

export interface ScriptRun {
  /** Upstream's time limit for each command. */
  timeoutMs: number;
  /** Through /bin/sh -c (upstream's runcmd), else split on spaces. */
  shell?: boolean;
  /** The error a command that runs out of time ends in. */
  onTimeout: (command: string) => Error;
  /** The error a command that exits non-zero ends in. */
  onFailure: (command: string, exitCode: number, output: string) => Error;
}

export async function runScript(ctx: PhaseContext, commands: readonly string[], run: ScriptRun): Promise<void> {
  for (const command of commands) {
    ctx.print(`Running ${command}`);
    const argv = run.shell ? ['/bin/sh', '-c', command] : command.split(/\s+/);
    const result = await runCommand(argv, { timeoutMs: run.timeoutMs });
    if (result.timedOut) throw run.onTimeout(command);
    if (result.exitCode !== 0) throw run.onFailure(command, result.exitCode, result.output.trim());
  }
}

/** What a reboot_script command that exits non-zero is: a recovery failure (cm3, netboot, oemrecovery) or a failed job (dragonboard). */
export type ResetFailure = 'recovery' | 'job';

/**
 * Upstream's hardreset: every reboot_script command, 120 s each; one that runs out of time is
 * a recovery failure (exit 46).
 */
export async function hardReset(ctx: PhaseContext, rebootScript: readonly string[], failure: ResetFailure = 'recovery'): Promise<void> {
  // Upstream fails the job (a KeyError, exit 1) rather than taking the device offline.
  if (rebootScript.length === 0) throw new ConnectorError('the device must be power cycled and default.yaml has no reboot_script');
  await runScript(ctx, rebootScript, {
    timeoutMs: 120_000,
    onTimeout: (command) => recoveryFailed(`timeout reaching control host! (reboot_script command ${quoted(command)} ran over 120s)`),
    onFailure: (command, code, output) => {
      const message = `reboot_script command ${quoted(command)} failed (exit ${code}): ${quoted(output)}`;
      return failure === 'recovery' ? new RecoveryError(message) : new ConnectorError(message);
    },
  });
}

/** Upstream's select_master_script / select_test_script: 60 s each, a timeout is "timeout reaching control host!". */
export function selectBoot(ctx: PhaseContext, script: readonly string[], shell: boolean): Promise<void> {
  return runScript(ctx, script, {
    timeoutMs: 60_000,
    shell,
    onTimeout: (command) => new ConnectorError(`timeout reaching control host! (${quoted(command)} ran over 60s)`),
    onFailure: (command, code, output) => new ConnectorError(`Error running ${quoted(command)} (rc=${code}): ${quoted(output)}`),
  });
}
