/** dragonboard: a Qualcomm Dragonboard 410c whose SD card is written from a master image on a USB stick. */
import type { DeviceType } from '../types';
import { dragonboardConfigSchema } from './config';
import { provisionDragonboard } from './provision';

export const dragonboard: DeviceType = { name: 'dragonboard', phases: { provision: provisionDragonboard }, configSchema: dragonboardConfigSchema };
