/** cm3: a Raspberry Pi Compute Module 3 whose eMMC a control host writes over USB. */
import type { DeviceType } from '../types';
import { cm3ConfigSchema } from './config';
import { provisionCm3 } from './provision';

export const cm3: DeviceType = { name: 'cm3', phases: { provision: provisionCm3 }, configSchema: cm3ConfigSchema };
