/** The device types this connector knows; one file each, registered here. */
import { UsageError } from '../errors';
import { quoted } from '../../common/text';
import { cm3 } from './cm3';
import { control_host_iot, control_host_kvm, oem_autoinstall } from './controlhost';
import { fake } from './fake';
import { maas2 } from './maas2';
import { multi } from './multi';
import { muxpi } from './muxpi';
import { netboot } from './netboot';
import { noprovision } from './noprovision';
import { dragonboard } from './dragonboard';
import { dell_oemscript, hp_oemscript, lenovo_oemscript, oemscript } from './oemscript';
import { oemrecovery } from './oemrecovery';
import type { DeviceType } from './types';

export const DEVICE_TYPES: ReadonlyMap<string, DeviceType> = new Map(
  [noprovision, fake, maas2, oemscript, dell_oemscript, hp_oemscript, lenovo_oemscript, control_host_kvm, control_host_iot, oem_autoinstall, multi, oemrecovery, dragonboard, netboot, cm3, muxpi].map((t) => [t.name, t]),
);

/** Upstream's names for types we implement under another name. */
export const DEVICE_TYPE_ALIASES: ReadonlyMap<string, DeviceType> = new Map([['fake_connector', fake]]);

/** Device types upstream's connector has and this one does not (yet): none since muxpi, all 16 are here. */
export const UPSTREAM_ONLY_DEVICE_TYPES: readonly string[] = [];

/** Names upstream used before renaming a type; agent confs written then may still carry them. */
export const UPSTREAM_FORMER_NAMES: ReadonlyMap<string, string> = new Map([
  ['zapper_iot', 'control_host_iot'],
  ['zapper_kvm', 'control_host_kvm'],
]);

export function supportedDeviceTypeNames(): string[] {
  return [...DEVICE_TYPES.keys(), ...DEVICE_TYPE_ALIASES.keys()];
}

/** The device type called `name`, or a usage error saying whether upstream has it. */
export function resolveDeviceType(name: string): DeviceType {
  const type = DEVICE_TYPES.get(name) ?? DEVICE_TYPE_ALIASES.get(name);
  if (type) return type;
  const supported = `supported: ${supportedDeviceTypeNames().join(', ')}`;
  // Names from our own lists are safe to print as they are; anything else is quoted.
  if (UPSTREAM_ONLY_DEVICE_TYPES.includes(name)) throw new UsageError(`device type ${name} is not supported by this connector yet; ${supported}`);
  const renamed = UPSTREAM_FORMER_NAMES.get(name);
  // Upstream dropped these names with the rename: its connector refuses them too.
  if (renamed) throw new UsageError(`device type ${name} is upstream's former name of ${renamed}; use ${renamed}`);
  throw new UsageError(`unknown device type ${quoted(name)} (not a type of this connector or of upstream's); ${supported}`);
}

export { CONNECTOR_PHASES, type ConnectorPhase, type DeviceType } from './types';
