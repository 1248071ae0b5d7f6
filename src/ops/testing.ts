/**
 * State in, state out: run one event against an in-memory Juju and read what the charm did,
 * in the manner of ops.testing's Context and State.
 *
 *   const ctx = new Context((fw) => new MyCharm(fw), { charmDir });
 *   const out = await ctx.run(ctx.on.configChanged(), { config: { 'config-dir': 'lab1' } });
 *   expect(out.unitStatus.name).toBe('active');
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { validateActionResultKey } from './actionresults';
import type { Backend } from './backend';
import type { JujuContext } from './context';
import { UncaughtCharmError } from './errors';
import { runEvent, type CharmFactory, type HookName } from './framework';
import type { LogLevel, SecretRef, StatusReading } from './hookcmds';
import { SETTABLE_STATUSES, statusFromName, type StatusBase, type StatusName } from './status';

export interface State {
  config?: Record<string, unknown>;
  leader?: boolean;
  unitStatus?: StatusBase;
  appStatus?: StatusBase;
  workloadVersion?: string;
  /** Secret content by id and by label. */
  secrets?: Record<string, Record<string, string>>;
}

export interface Output {
  unitStatus: StatusBase | undefined;
  appStatus: StatusBase | undefined;
  /** Every status-set in order, unit ones only. */
  unitStatusHistory: StatusBase[];
  workloadVersion: string | undefined;
  logs: { level: LogLevel; message: string }[];
  actionResults: Record<string, string>;
  actionLogs: string[];
  /** The action-fail message, if the action failed. */
  actionFailure: string | undefined;
  exitCode: number;
}

export interface EventSpec {
  dispatchPath: string;
  actionParams?: Record<string, unknown>;
}

const hook = (name: HookName): EventSpec => ({ dispatchPath: `hooks/${name}` });

export const on = {
  install: () => hook('install'),
  start: () => hook('start'),
  stop: () => hook('stop'),
  remove: () => hook('remove'),
  configChanged: () => hook('config-changed'),
  upgradeCharm: () => hook('upgrade-charm'),
  updateStatus: () => hook('update-status'),
  leaderElected: () => hook('leader-elected'),
  secretChanged: () => hook('secret-changed'),
  action: (name: string, params: Record<string, unknown> = {}): EventSpec => ({
    dispatchPath: `actions/${name}`,
    actionParams: params,
  }),
};

/** An in-memory Juju that refuses what the real hook tools refuse. */
export class MemoryBackend implements Backend {
  readonly out: Output;
  constructor(
    private readonly state: State,
    private readonly configDefaults: Record<string, unknown>,
    private readonly actionParams: Record<string, unknown> | undefined,
  ) {
    this.out = {
      unitStatus: state.unitStatus,
      appStatus: state.appStatus,
      unitStatusHistory: [],
      workloadVersion: state.workloadVersion,
      logs: [],
      actionResults: {},
      actionLogs: [],
      actionFailure: undefined,
      exitCode: 0,
    };
  }
  private requireAction(tool: string): Record<string, unknown> {
    if (!this.actionParams) throw new Error(`${tool}: not running an action`);
    return this.actionParams;
  }
  async configGet() {
    const merged = { ...this.configDefaults, ...this.state.config };
    return Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== null && v !== undefined));
  }
  async actionGet() {
    return structuredClone(this.requireAction('action-get'));
  }
  async actionSet(results: Readonly<Record<string, string>>) {
    this.requireAction('action-set');
    for (const key of Object.keys(results)) validateActionResultKey(key);
    Object.assign(this.out.actionResults, results);
  }
  async actionFail(message: string) {
    this.requireAction('action-fail');
    this.out.actionFailure = message || 'action failed without reason given, check action for errors';
  }
  async actionLog(message: string) {
    this.requireAction('action-log');
    this.out.actionLogs.push(message);
  }
  async statusSet(status: StatusName, message: string, options: { application?: boolean } = {}) {
    if (!SETTABLE_STATUSES.includes(status)) throw new Error(`invalid status "${status}"`);
    const value = statusFromName(status, message);
    if (options.application) {
      if (!this.state.leader) throw new Error('this unit is not the leader');
      this.out.appStatus = value;
    } else {
      this.out.unitStatus = value;
      this.out.unitStatusHistory.push(value);
    }
  }
  async statusGet(options: { application?: boolean } = {}): Promise<StatusReading> {
    const s = options.application ? this.out.appStatus : this.out.unitStatus;
    return { status: s?.name ?? 'unknown', message: s?.message ?? '' };
  }
  async jujuLog(level: LogLevel, message: string) {
    this.out.logs.push({ level, message });
  }
  async isLeader() {
    return this.state.leader ?? false;
  }
  async applicationVersionSet(version: string) {
    this.out.workloadVersion = version;
  }
  async secretGet(ref: SecretRef) {
    const content = (ref.id && this.state.secrets?.[ref.id]) || (ref.label && this.state.secrets?.[ref.label]);
    if (!content) throw new Error(`secret ${ref.id ?? ref.label} not found`);
    return { ...content };
  }
}

/** Reads the defaults a real Juju would merge into config-get, from the charm's config.yaml. */
export function configDefaultsFrom(charmDir: string): Record<string, unknown> {
  const file = path.join(charmDir, 'config.yaml');
  if (!fs.existsSync(file)) return {};
  const doc = parseYaml(fs.readFileSync(file, 'utf8')) as { options?: Record<string, { default?: unknown }> };
  return Object.fromEntries(Object.entries(doc.options ?? {}).map(([k, v]) => [k, v.default ?? null]));
}

export class Context {
  readonly on = on;
  private readonly configDefaults: Record<string, unknown>;
  constructor(
    private readonly factory: CharmFactory,
    private readonly options: { charmDir: string; unitName?: string },
  ) {
    this.configDefaults = configDefaultsFrom(options.charmDir);
  }

  /** Runs one event. An uncaught error in a hook rejects with UncaughtCharmError. */
  async run(event: EventSpec, state: State = {}): Promise<Output> {
    const backend = new MemoryBackend(state, this.configDefaults, event.actionParams);
    const isAction = event.dispatchPath.startsWith('actions/');
    const unitName = this.options.unitName ?? 'testflinger-agent-host/0';
    const context: JujuContext = Object.freeze({
      dispatchPath: event.dispatchPath,
      unitName,
      appName: unitName.split('/')[0] ?? '',
      charmDir: this.options.charmDir,
      modelName: 'test-model',
      jujuVersion: '3.6.0',
      actionName: isAction ? event.dispatchPath.slice('actions/'.length) : undefined,
      actionId: isAction ? '1' : undefined,
    });
    backend.out.exitCode = await runEvent(this.factory, context, backend);
    if (!isAction && backend.out.exitCode !== 0) {
      const err = backend.out.logs.find((l) => l.level === 'ERROR');
      throw new UncaughtCharmError(event.dispatchPath, new Error(err?.message ?? 'non-zero exit'));
    }
    return backend.out;
  }
}
