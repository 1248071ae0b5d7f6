/**
 * A sandboxed agent host driven as Juju drives a unit: the real dispatch, emulated hook tools,
 * AGENT_HOST_ROOT in a temp dir, and the real supervisord the charm starts there.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseStatus, type ProgramStatus } from '../../src/charm/supervisor';
import { createEmulatedUnit, dispatchEvent, type DispatchResult, type EmulatedUnit } from '../../src/hooktools/emulator';
import { onCleanup, repoRoot, tempDir } from './tmp';

export class Sandbox {
  readonly root: string;
  readonly unit: EmulatedUnit;
  constructor(config: Record<string, unknown> = {}, readonly charmDir = repoRoot) {
    this.root = tempDir('sbx');
    // Hooks may start a supervisord here (install does); it stops before the dir is removed.
    onCleanup(() => this.shutdown());
    this.unit = createEmulatedUnit(path.join(this.root, '.juju'), path.join(repoRoot, 'dist', 'hooktool.js'), charmDir, { config });
  }

  setConfig(change: Record<string, unknown>): void {
    this.unit.update((s) => Object.assign(s.config, change));
  }

  async hook(name: string, options: { viaHookFile?: boolean } = {}): Promise<DispatchResult> {
    const result = await dispatchEvent(this.unit, `hooks/${name}`, { charmDir: this.charmDir, env: { AGENT_HOST_ROOT: this.root }, ...options });
    if (result.exitCode !== 0) throw new Error(`hook ${name} failed (${result.exitCode}): ${result.stderr}\n${JSON.stringify(this.unit.state().logs.slice(-5))}`);
    return result;
  }

  async action(name: string, params: Record<string, unknown> = {}) {
    const result = await dispatchEvent(this.unit, `actions/${name}`, { charmDir: this.charmDir, env: { AGENT_HOST_ROOT: this.root }, actionParams: params });
    const s = this.unit.state();
    return { result, results: s.actionResults, failed: s.actionFailed, message: s.actionMessage };
  }

  get status(): { status: string; message: string } | null {
    return this.unit.state().unitStatus;
  }

  supervisorctl(...args: string[]): string {
    try {
      return execFileSync('supervisorctl', ['-c', path.join(this.root, 'etc/supervisor/supervisord.conf'), ...args], { encoding: 'utf8' });
    } catch (error) {
      return String((error as { stdout?: string }).stdout ?? '');
    }
  }

  programs(): Map<string, ProgramStatus> {
    return new Map(parseStatus(this.supervisorctl('status')).map((p) => [p.name, p]));
  }

  programFile(name: string): string {
    return path.join(this.root, 'etc/supervisor/conf.d', `${name}.conf`);
  }

  /** Stops the sandbox's supervisord and waits for its agents to be gone. */
  async shutdown(): Promise<void> {
    const pidFile = path.join(this.root, 'var/run/supervisord.pid');
    if (!fs.existsSync(pidFile)) return;
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    this.supervisorctl('shutdown');
    const deadline = Date.now() + 15000;
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
