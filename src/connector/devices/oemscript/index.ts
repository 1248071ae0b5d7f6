/**
 * The OEM script family: devices restored from an OEM image put on their recovery partition.
 * They differ only in how the restore is started, as upstream's do.
 */
import type { DeviceType } from '../types';
import { oemScriptConfigSchema } from './config';
import { oemScriptProvisionPhase } from './provision';
import type { RestoreMethod } from './recovery-script';

/** Upstream's rule for oemscript and dell_oemscript: images of the stella and sutton projects restore through ubuntu-recovery. */
export function restoreMethodForImage(url: string): RestoreMethod {
  const image = url.split('?')[0]?.split('/').pop() ?? '';
  return /stella|sutton/.test(image) ? 'ubr' : 'dell';
}

function oemScriptType(name: string, methodFor: (url: string) => RestoreMethod): DeviceType {
  // As upstream, test logs the serial console (test-serial.log); upstream's provision of these types does not.
  return { name, phases: { provision: oemScriptProvisionPhase(methodFor) }, configSchema: oemScriptConfigSchema };
}

export const oemscript = oemScriptType('oemscript', restoreMethodForImage);
export const dell_oemscript = oemScriptType('dell_oemscript', restoreMethodForImage);
/** HP and Lenovo images always restore through ubuntu-recovery (upstream passes --ubr). */
export const hp_oemscript = oemScriptType('hp_oemscript', () => 'ubr');
export const lenovo_oemscript = oemScriptType('lenovo_oemscript', () => 'ubr');
