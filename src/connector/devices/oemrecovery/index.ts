/** oemrecovery: an OEM image restored from the device's own recovery partition by the lab's recovery_cmds. */
import type { DeviceType } from '../types';
import { oemRecoveryConfigSchema } from './config';
import { provisionOemRecovery } from './provision';

export const oemrecovery: DeviceType = { name: 'oemrecovery', phases: { provision: provisionOemRecovery }, configSchema: oemRecoveryConfigSchema };
