/** Running hooks and actions on an emulated unit, for the sandbox and the unit-mode host alike. */
import type { DispatchResult, EmulatedUnit } from '../../src/hooktools/emulator';

/** Runs a hook and fails the test with the charm's last logs if it exits non-zero. */
export async function hookOrThrow(unit: EmulatedUnit, name: string, dispatch: () => Promise<DispatchResult>): Promise<DispatchResult> {
  const result = await dispatch();
  if (result.exitCode !== 0) throw new Error(`hook ${name} failed (${result.exitCode}): ${result.stderr}\n${JSON.stringify(unit.state().logs.slice(-5))}`);
  return result;
}

/** Runs an action and returns what Juju would show of it. */
export async function actionOutcome(unit: EmulatedUnit, dispatch: () => Promise<DispatchResult>) {
  const result = await dispatch();
  const s = unit.state();
  return { result, results: s.actionResults, failed: s.actionFailed, message: s.actionMessage };
}
