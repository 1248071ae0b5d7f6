/** Runs one phase for one device type, writing the error file the agent reads on failure. */
import { ConnectorError, RecoveryError, writeErrorFile } from './errors';
import type { PhaseContext, PhaseFn } from './phases';
import { runAllocate, runReserve, runTest } from './phases';
import { CONNECTOR_PHASES, DEVICE_TYPES, type ConnectorPhase, type DeviceType } from './devices';

/** What an agent expects when the device cannot be brought back. */
export const EXIT_RECOVERY_FAILED = 46;

const SHARED: Partial<Record<ConnectorPhase, PhaseFn>> = {
  test: runTest,
  reserve: runReserve,
  allocate: runAllocate,
  setup: async (ctx) => {
    ctx.print(`Device ${ctx.device.device_ip} ready for setup`);
    return 0;
  },
  cleanup: async () => 0,
};

export function phaseFor(type: DeviceType, phase: ConnectorPhase): PhaseFn {
  const own = type.phases[phase];
  if (own) return own;
  const shared = SHARED[phase];
  if (shared) return shared;
  return async () => {
    throw new ConnectorError(`${phase} is not supported by device type ${type.name}`);
  };
}

export function isPhase(value: string): value is ConnectorPhase {
  return (CONNECTOR_PHASES as readonly string[]).includes(value);
}

export async function runConnectorPhase(typeName: string, phase: ConnectorPhase, ctx: PhaseContext): Promise<number> {
  const type = DEVICE_TYPES.get(typeName);
  if (!type) throw new ConnectorError(`unknown device type ${typeName}; known: ${[...DEVICE_TYPES.keys()].join(', ')}`);
  try {
    return await phaseFor(type, phase)(ctx);
  } catch (error) {
    writeErrorFile(ctx.runDir, phase, error);
    ctx.print(`ERROR: ${phase} failed: ${(error as Error).message}`);
    return error instanceof RecoveryError ? EXIT_RECOVERY_FAILED : 1;
  }
}
