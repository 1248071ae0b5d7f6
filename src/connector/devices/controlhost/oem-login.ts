/**
 * After control_host_kvm restored an OEM 22.04 image (`alloem_url` or the `desktop-jammy-oem`
 * preset), upstream's connector logs in with the image's own account (ubuntu, password "u"),
 * sets that account's password to the job's test_password, copies the agents' key, and, when the
 * job gives a test image `url`, installs it with the OEM script of `provision_data.oem`.
 *
 * Here no password is ever on a command line: the first login copies the agents' key (the
 * password reaches ssh through SSH_ASKPASS, copy-id.ts), the new password goes to `chpasswd` on
 * its standard input over that key, and upstream's own key copy as the test user follows (a
 * device that already takes the key is left alone). The outcome is upstream's.
 */
import { ConnectorError, JobError } from '../../errors';
import { testUsername, type PhaseContext } from '../../phases';
import { sshRun } from '../../ssh';
import { quoted } from '../../../common/text';
import type { SshUser } from '../../validate';
import type { DeviceType } from '../types';
import { dell_oemscript, hp_oemscript, lenovo_oemscript, oemscript } from '../oemscript';
import { oemScriptProvision } from '../oemscript/config';
import { jobCredentials } from './config';
import { copyAgentKey } from './copy-id';

/** The account an OEM 22.04 image comes with. */
export const OEM_IMAGE_USER = 'ubuntu' as SshUser;
export const OEM_IMAGE_PASSWORD = 'u';
const CHPASSWD_TIMEOUT_MS = 60_000;
const FAILED_SSH = 'Failed configuring SSH on the DUT.';

/** `provision_data.oem` picks the OEM script, as upstream; any other value (or none): the generic one. */
const OEM_SCRIPTS: Readonly<Record<string, DeviceType>> = { hp: hp_oemscript, dell: dell_oemscript, lenovo: lenovo_oemscript };

export function oemScriptFor(oem: string | undefined): DeviceType {
  return (oem !== undefined && Object.hasOwn(OEM_SCRIPTS, oem) ? OEM_SCRIPTS[oem] : undefined) ?? oemscript;
}

/** The job's test password, as chpasswd will read it: one line. */
function newPassword(ctx: PhaseContext): string {
  const { password } = jobCredentials(ctx.job, { username: 'ubuntu', password: 'ubuntu' });
  return password;
}

/** Checked before the control host hears anything: what the OEM steps will need of the job. */
export function checkOemSteps(ctx: PhaseContext, url: string | undefined): void {
  if (/[\r\n\0]/.test(newPassword(ctx))) throw new JobError('test_data.test_password: a password on one line (no line breaks or NUL), as chpasswd reads it');
  if (url !== undefined) oemScriptProvision(ctx.job);
}

async function setPassword(ctx: PhaseContext): Promise<void> {
  ctx.print(`Changing the original password of ${OEM_IMAGE_USER} to the job's test_password`);
  const result = await sshRun(ctx.device, OEM_IMAGE_USER, 'sudo chpasswd', `${OEM_IMAGE_USER}:${newPassword(ctx)}\n`, CHPASSWD_TIMEOUT_MS);
  if (result.exitCode === 124) throw new ConnectorError('Timed out configuring SSH on the DUT.');
  if (result.exitCode !== 0) throw new ConnectorError(`${FAILED_SSH} chpasswd exited ${result.exitCode}: ${quoted(result.output.trim())}`);
}

/** Upstream's post-run steps for an OEM 22.04 restore. */
export async function finishOemRestore(ctx: PhaseContext, oem: string | undefined, url: string | undefined): Promise<void> {
  try {
    await copyAgentKey(ctx, OEM_IMAGE_USER, OEM_IMAGE_PASSWORD, 1);
  } catch (error) {
    throw new ConnectorError(`${FAILED_SSH} ${(error as Error).message}`);
  }
  await setPassword(ctx);
  await copyAgentKey(ctx, testUsername(ctx), newPassword(ctx));
  if (url === undefined) {
    ctx.print('Provisioned with base `alloem` image, no test URL specified.');
    return;
  }
  const script = oemScriptFor(oem);
  ctx.print(`Installing the test image with ${script.name}`);
  const provision = script.phases.provision;
  if (!provision) throw new ConnectorError(`${script.name} has no provision phase`);
  const code = await provision(ctx);
  if (code !== 0) throw new ConnectorError(`${script.name} provisioning failed (exit ${code})`);
}
