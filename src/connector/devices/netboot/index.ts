/** netboot: a device whose master image runs an imager on HTTP that writes the test image to its disk. */
import type { DeviceType } from '../types';
import { netbootConfigSchema } from './config';
import { provisionNetboot } from './provision';

export const netboot: DeviceType = { name: 'netboot', phases: { provision: provisionNetboot }, configSchema: netbootConfigSchema };
