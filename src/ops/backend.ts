import * as cmds from './hookcmds';
import type { LogLevel, SecretRef, StatusReading, ToolRunner } from './hookcmds';
import type { StatusName } from './status';

/**
 * Everything the framework asks of Juju. Both the real unit and the test harness answer it
 * through hook tools: real ones as programs, the harness's in-process.
 */
export interface Backend {
  configGet(): Promise<Record<string, unknown>>;
  actionGet(): Promise<Record<string, unknown>>;
  /** Flattened, validated keys. */
  actionSet(results: Readonly<Record<string, string>>): Promise<void>;
  actionFail(message: string): Promise<void>;
  actionLog(message: string): Promise<void>;
  statusSet(status: StatusName, message: string, options?: { application?: boolean }): Promise<void>;
  statusGet(options?: { application?: boolean }): Promise<StatusReading>;
  jujuLog(level: LogLevel, message: string): Promise<void>;
  isLeader(): Promise<boolean>;
  applicationVersionSet(version: string): Promise<void>;
  secretGet(ref: SecretRef, options?: { refresh?: boolean; peek?: boolean }): Promise<Record<string, string>>;
  relationIds(endpoint: string): Promise<number[]>;
  relationList(relationId: number): Promise<string[]>;
  relationRemoteApp(relationId: number): Promise<string | undefined>;
  relationGet(relationId: number, unitOrApp: string, options?: { app?: boolean }): Promise<Record<string, string>>;
  relationSet(relationId: number, values: Readonly<Record<string, string>>, options?: { app?: boolean }): Promise<void>;
  stateGet(): Promise<Record<string, string>>;
  stateSet(values: Readonly<Record<string, string>>): Promise<void>;
  stateDelete(key: string): Promise<void>;
}

export class HookToolBackend implements Backend {
  constructor(private readonly run: ToolRunner = cmds.execaToolRunner) {}
  configGet() {
    return cmds.configGet(this.run);
  }
  actionGet() {
    return cmds.actionGet(this.run);
  }
  actionSet(results: Readonly<Record<string, string>>) {
    return cmds.actionSet(this.run, results);
  }
  actionFail(message: string) {
    return cmds.actionFail(this.run, message);
  }
  actionLog(message: string) {
    return cmds.actionLog(this.run, message);
  }
  statusSet(status: StatusName, message: string, options?: { application?: boolean }) {
    return cmds.statusSet(this.run, status, message, options);
  }
  statusGet(options?: { application?: boolean }) {
    return cmds.statusGet(this.run, options);
  }
  jujuLog(level: LogLevel, message: string) {
    return cmds.jujuLog(this.run, level, message);
  }
  isLeader() {
    return cmds.isLeader(this.run);
  }
  applicationVersionSet(version: string) {
    return cmds.applicationVersionSet(this.run, version);
  }
  secretGet(ref: SecretRef, options?: { refresh?: boolean; peek?: boolean }) {
    return cmds.secretGet(this.run, ref, options);
  }
  relationIds(endpoint: string) {
    return cmds.relationIds(this.run, endpoint);
  }
  relationList(relationId: number) {
    return cmds.relationList(this.run, relationId);
  }
  relationRemoteApp(relationId: number) {
    return cmds.relationRemoteApp(this.run, relationId);
  }
  relationGet(relationId: number, unitOrApp: string, options?: { app?: boolean }) {
    return cmds.relationGet(this.run, relationId, unitOrApp, options);
  }
  relationSet(relationId: number, values: Readonly<Record<string, string>>, options?: { app?: boolean }) {
    return cmds.relationSet(this.run, relationId, values, options);
  }
  stateGet() {
    return cmds.stateGet(this.run);
  }
  stateSet(values: Readonly<Record<string, string>>) {
    return cmds.stateSet(this.run, values);
  }
  stateDelete(key: string) {
    return cmds.stateDelete(this.run, key);
  }
}
