/** A device that is already installed and running: provision only checks it answers over SSH. */
import { RecoveryError } from '../errors';
import { testUsername, writeDeviceInfo, type PhaseFn } from '../phases';
import { waitForSsh } from '../steps';
import type { DeviceType } from './types';

const provision: PhaseFn = async (ctx) => {
  try {
    await waitForSsh(ctx, testUsername(ctx));
  } catch (error) {
    throw new RecoveryError((error as Error).message, { cause: error });
  }
  writeDeviceInfo(ctx);
  return 0;
};

export const noprovision: DeviceType = { name: 'noprovision', phases: { provision } };
