/**
 * maas2: a machine deployed by MAAS through the `maas` CLI, as upstream's connector of that name.
 * Provision releases the machine, sets its storage, deploys the job's image and waits until it
 * answers over SSH; cleanup releases it. firmware_update is the connector's, for every type
 * (../../firmware), with maas2's maas_user and node_id for the HPE route.
 */
import { ConnectorError } from '../../errors';
import { writeDeviceInfo, type PhaseContext, type PhaseFn } from '../../phases';
import { withSerialLog } from '../../serial';
import type { DeviceType } from '../types';
import { maas2Config, maas2ConfigSchema, maas2Provision, maas2ProvisionSchema, type Maas2Provision, type StorageLayout } from './config';
import { Machine } from './machine';
import { requestTpmClear, resetEfiBootOrder } from './preflight';

async function deploy(ctx: PhaseContext, machine: Machine, image: Maas2Provision, defaultDisks: StorageLayout | undefined): Promise<void> {
  if (machine.config.reset_efi) await resetEfiBootOrder(ctx);
  await machine.release();
  await machine.setStorage(image.disks ?? defaultDisks);
  await machine.startDeploy(image);
  await machine.awaitDeployed();
}

/** As upstream: from the installed system, or else from a fresh deploy of the default image. */
async function clearTpm(ctx: PhaseContext, machine: Machine): Promise<void> {
  ctx.print('MAAS: clearing the TPM before provisioning');
  if (await requestTpmClear(ctx)) return;
  await deploy(ctx, machine, maas2ProvisionSchema.parse({}), undefined);
  if (!(await requestTpmClear(ctx))) throw new ConnectorError('clearing the TPM failed');
}

/** As upstream: the serial console is logged (provision-serial.log) from the first step to the last. */
const provision: PhaseFn = withSerialLog('provision', async (ctx) => {
  // The job's data is checked whole before MAAS hears anything.
  const image = maas2Provision(ctx.job);
  const machine = new Machine(ctx, maas2Config(ctx.device));
  if (machine.config.clear_tpm) await clearTpm(ctx, machine);
  await deploy(ctx, machine, image, machine.config.default_disks);
  writeDeviceInfo(ctx);
  return 0;
});

const cleanup: PhaseFn = async (ctx) => {
  const machine = new Machine(ctx, maas2Config(ctx.device));
  if (machine.config.reset_efi) await resetEfiBootOrder(ctx);
  await machine.release();
  return 0;
};

export const maas2: DeviceType = { name: 'maas2', phases: { provision, cleanup }, configSchema: maas2ConfigSchema };
