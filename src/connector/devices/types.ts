import type { z } from 'zod';
import { PHASES, type Phase } from '../../common/contract';
import type { DeviceConfig } from '../config';
import type { PhaseFn } from '../phases';

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
}
