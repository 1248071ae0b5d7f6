/** The device types this connector knows; one file each, registered here. */
import { fake } from './fake';
import { noprovision } from './noprovision';
import type { DeviceType } from './types';

export const DEVICE_TYPES: ReadonlyMap<string, DeviceType> = new Map([fake, noprovision].map((t) => [t.name, t]));
export { CONNECTOR_PHASES, type ConnectorPhase, type DeviceType } from './types';
