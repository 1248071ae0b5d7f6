/** The emulated Juju's state, kept in one JSON file that every tool call reads and writes. */
import * as fs from 'node:fs';

export interface EmulatedStatus {
  status: string;
  message: string;
}

/** One relation as this unit sees it: Juju's four kinds of data bag, all string to string. */
export interface EmulatedRelation {
  id: number;
  endpoint: string;
  remoteApp: string;
  localUnitData: Record<string, string>;
  localAppData: Record<string, string>;
  remoteAppData: Record<string, string>;
  /** The remote units in the relation (what relation-list prints), each with its bag. */
  remoteUnitsData: Record<string, Record<string, string>>;
}

/** What JUJU_RELATION_ID, JUJU_REMOTE_UNIT, JUJU_REMOTE_APP and JUJU_DEPARTING_UNIT say in a relation hook. */
export interface HookRelation {
  id: number;
  remoteApp?: string;
  remoteUnit?: string;
  departingUnit?: string;
}

export interface EmulatorState {
  /** The unit the tools answer for (relation-get of it reads its own bag). */
  unitName: string;
  /** Values the operator set; config-get overlays them on the charm's config.yaml defaults. */
  config: Record<string, unknown>;
  configDefaults: Record<string, unknown>;
  leader: boolean;
  /** Set while an action runs. */
  action: { name: string; params: Record<string, unknown> } | null;
  unitStatus: EmulatedStatus | null;
  /** Every unit status-set, in order. */
  unitStatusHistory: EmulatedStatus[];
  appStatus: EmulatedStatus | null;
  workloadVersion: string | null;
  logs: { level: string; message: string }[];
  actionResults: Record<string, unknown>;
  actionFailed: boolean;
  actionMessage: string;
  actionLogs: string[];
  secrets: Record<string, Record<string, string>>;
  /** The charm's own key-value state on the controller (state-get, state-set, state-delete). */
  charmState: Record<string, string>;
  relations: EmulatedRelation[];
  /** Set while a relation hook runs. */
  hookRelation: HookRelation | null;
  /** Every call, as argv, refused ones included. */
  calls: string[][];
}

export function emptyState(): EmulatorState {
  return {
    unitName: 'unit/0',
    config: {},
    configDefaults: {},
    leader: true,
    action: null,
    unitStatus: null,
    unitStatusHistory: [],
    appStatus: null,
    workloadVersion: null,
    logs: [],
    actionResults: {},
    actionFailed: false,
    actionMessage: '',
    actionLogs: [],
    secrets: {},
    charmState: {},
    relations: [],
    hookRelation: null,
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
