/**
 * A sandboxed agent host driven as Juju drives a unit: the real dispatch, emulated hook tools,
 * AGENT_HOST_ROOT in a directory, and the real supervisord the charm starts there. One place for
 * what the demo, the benchmark and the tests all do with such a host (docs/architecture.md).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHost } from '../charm/host';
import { layOutUnitDirectories } from '../charm/unitdirs';
import { hostPaths, type HostPaths } from '../charm/paths';
import { parseStatus, type ProgramStatus } from '../charm/supervisor';
import { createEmulatedUnit, dispatchEvent, type DispatchOptions, type DispatchResult, type EmulatedUnit } from '../hooktools/emulator';

const SHUTDOWN_WAIT_MS = 15_000;
export interface SandboxHostOptions {
  root: string;
  /** The charm to run: a checkout with dist/ built, or an unpacked .charm. */
  charmDir: string;
  /** The emulated hook tool program (dist/hooktool.js of a checkout). */
  hooktool: string;
  config?: Record<string, unknown>;
}

export class SandboxHost {
  readonly root: string;
  readonly charmDir: string;
  readonly paths: HostPaths;
  readonly unit: EmulatedUnit;

  constructor(options: SandboxHostOptions) {
    this.root = options.root;
    this.charmDir = options.charmDir;
    this.paths = hostPaths(options.root);
    layOutUnitDirectories(options.root);
    this.unit = createEmulatedUnit(path.join(options.root, '.juju-unit'), options.hooktool, options.charmDir, { config: options.config ?? {} });
  }

  setConfig(change: Record<string, unknown>): void {
    this.unit.update((s) => Object.assign(s.config, change));
  }

  /** Runs `hooks/<name>` or `actions/<name>` through the charm's dispatch, in this sandbox. */
  dispatch(dispatchPath: string, options: Pick<DispatchOptions, 'relation'> & { actionParams?: Record<string, unknown> } = {}): Promise<DispatchResult> {
    return dispatchEvent(this.unit, dispatchPath, { charmDir: this.charmDir, env: { AGENT_HOST_ROOT: this.root }, ...options });
  }

  /** supervisorctl against the sandbox's supervisord, as an operator would type it; its output even when it exits non-zero. */
  supervisorctl(...args: string[]): string {
    try {
      return execFileSync('supervisorctl', ['-c', this.paths.supervisordConf, ...args], { encoding: 'utf8' });
    } catch (error) {
      return String((error as { stdout?: string }).stdout ?? '');
    }
  }

  programs(): Map<string, ProgramStatus> {
    return new Map(parseStatus(this.supervisorctl('status')).map((p) => [p.name, p]));
  }

  /** Stops the sandbox's agents and supervisord, if one runs, and waits (bounded) for it to go. */
  async shutdown(): Promise<void> {
    if (!fs.existsSync(this.paths.supervisorPidFile)) return;
    const pid = Number(fs.readFileSync(this.paths.supervisorPidFile, 'utf8'));
    await createHost({ paths: this.paths, driver: 'sandbox', charmDir: this.charmDir }).supervisor.shutdown().catch(() => undefined);
    const deadline = Date.now() + SHUTDOWN_WAIT_MS;
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    process.kill(pid, 'SIGKILL');
  }
}
