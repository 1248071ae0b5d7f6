/** The emulated Juju's state, kept in one JSON file that every tool call reads and writes. */
import * as fs from 'node:fs';

export interface EmulatedStatus {
  status: string;
  message: string;
}

export interface EmulatorState {
  /** Values the operator set; config-get overlays them on the charm's config.yaml defaults. */
  config: Record<string, unknown>;
  configDefaults: Record<string, unknown>;
  leader: boolean;
  /** Set while an action runs. */
  action: { name: string; params: Record<string, unknown> } | null;
  unitStatus: EmulatedStatus | null;
  appStatus: EmulatedStatus | null;
  workloadVersion: string | null;
  logs: { level: string; message: string }[];
  actionResults: Record<string, unknown>;
  actionFailed: boolean;
  actionMessage: string;
  actionLogs: string[];
  secrets: Record<string, Record<string, string>>;
  /** Every call, as argv, refused ones included. */
  calls: string[][];
}

export function emptyState(): EmulatorState {
  return {
    config: {},
    configDefaults: {},
    leader: true,
    action: null,
    unitStatus: null,
    appStatus: null,
    workloadVersion: null,
    logs: [],
    actionResults: {},
    actionFailed: false,
    actionMessage: '',
    actionLogs: [],
    secrets: {},
    calls: [],
  };
}

export function readState(file: string): EmulatorState {
  return { ...emptyState(), ...(JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<EmulatorState>) };
}

export function writeState(file: string, state: EmulatorState): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 1));
  fs.renameSync(tmp, file);
}
