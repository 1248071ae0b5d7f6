import type { z } from 'zod';
import { PHASES, type Phase } from '../../common/contract';
import type { DeviceConfig } from '../config';
import type { PhaseContext, PhaseFn } from '../phases';

/** The agent's phases: the connector answers to each (runtest is an alias of test). */
export const CONNECTOR_PHASES = PHASES;
export type ConnectorPhase = Phase;

/** A device type: the phases it implements; the others fall back to the shared ones. */
export interface DeviceType {
  name: string;
  phases: Partial<Record<ConnectorPhase, PhaseFn>>;
  /**
   * The type's own keys in default.yaml, on top of the shared ones: checked before any phase
   * runs, so a bad one is a usage error naming the file and key.
   */
  configSchema?: z.ZodType<DeviceConfig, z.ZodTypeDef, unknown>;
  /**
   * Upstream's MANAGE_DUT_POWER_DURING_REBOOT: the device is powered off (poweroff_script) while
   * its control host is power cycled before provisioning, and on again (poweron_script) after.
   */
  managesDutPower?: boolean;
  /**
   * The serial console logged to provision-serial.log over the whole provision phase, the control
   * host's pre-provision hook included, as upstream's control_host_iot (other types log it, if
   * at all, inside their own provisioning, after the hook).
   */
  logsSerialThroughProvision?: boolean;
  /**
   * Checks the job before the control host's pre-provision hook, so that a bad job never power
   * cycles it (ours: upstream's hook runs before the type reads its job). Throws as the phase would.
   */
  checkProvision?: (ctx: PhaseContext) => void;
}
