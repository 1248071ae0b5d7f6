/** Runs one phase for one device type, writing the error file the agent reads on failure. */
import * as path from 'node:path';
import { EXIT_RECOVERY_FAILED } from '../common/contract';
import { loadJobFile, type DeviceConfig } from './config';
import { ConnectorError, RecoveryError, writeErrorFile } from './errors';
import type { PhaseContext, PhaseFn } from './phases';
import { runAllocate, runReserve } from './phases';
import { preProvisionHook, preTestHook } from './controlhost-hooks';
import { testWithSerialLog, withSerialLog } from './serial';
import { firmwareUpdate } from './firmware';
import type { ConnectorPhase, DeviceType } from './devices';

/** Any other failure of a phase, the job's own included: the job fails, the device stays online. */
export const EXIT_PHASE_FAILED = 1;

/** Upstream's test phase: the control host (if any) set up for it, then the test commands with the serial console logged. */
const sharedTest: PhaseFn = async (ctx) => {
  await preTestHook(ctx);
  return testWithSerialLog(ctx);
};

const SHARED: Partial<Record<ConnectorPhase, PhaseFn>> = {
  test: sharedTest,
  reserve: runReserve,
  /** Upstream's base connector updates firmware for every type: LVFS or an HPE server's BMC, by the device's DMI. */
  firmware_update: firmwareUpdate,
  allocate: runAllocate,
  setup: async (ctx) => {
    ctx.print(`Device ${ctx.device.device_ip} ready for setup`);
    return 0;
  },
  cleanup: async () => 0,
};

/**
 * Upstream's provision, for every type: the job checked (ours), the control host's pre-provision
 * hook (power cycle, setup), then the type's own provisioning; the serial console logged
 * through both for the types that ask it.
 */
function withPreProvisionHook(type: DeviceType, provision: PhaseFn): PhaseFn {
  const hooked: PhaseFn = async (ctx) => {
    await preProvisionHook(ctx, type.managesDutPower === true);
    return provision(ctx);
  };
  const run = type.logsSerialThroughProvision ? withSerialLog('provision', hooked) : hooked;
  return async (ctx) => {
    type.checkProvision?.(ctx);
    return run(ctx);
  };
}

/** The type's own phase, else the shared one; a type's own test phase (multi's, as upstream's) has no pre-test hook. */
export function phaseFor(type: DeviceType, phase: ConnectorPhase): PhaseFn {
  const own = type.phases[phase];
  if (own && phase === 'provision') return withPreProvisionHook(type, own);
  if (own) return own;
  const shared = SHARED[phase];
  if (shared) return shared;
  return async () => {
    throw new ConnectorError(`${phase} is not supported by device type ${type.name}`);
  };
}

export interface PhaseRun {
  device: DeviceConfig;
  /** testflinger.json; its directory is the job's run directory. */
  jobFile: string;
  print: PhaseContext['print'];
  sleep: PhaseContext['sleep'];
}

/** Loads the job and runs the phase; a bad job, like any failure but recovery, fails the phase alone. */
export async function runConnectorPhase(type: DeviceType, phase: ConnectorPhase, run: PhaseRun): Promise<number> {
  const runDir = path.dirname(path.resolve(run.jobFile));
  try {
    const job = loadJobFile(run.jobFile);
    return await phaseFor(type, phase)({ device: run.device, job, runDir, print: run.print, sleep: run.sleep });
  } catch (error) {
    writeErrorFile(runDir, phase, error);
    run.print(`ERROR: ${phase} failed: ${error instanceof Error ? error.message : String(error)}`);
    return error instanceof RecoveryError ? EXIT_RECOVERY_FAILED : EXIT_PHASE_FAILED;
  }
}
