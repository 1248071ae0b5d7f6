/** The sandboxed agent host of src/sandbox, with the assertions-friendly helpers tests want. */
import * as path from 'node:path';
import type { DispatchResult } from '../../src/hooktools/emulator';
import { SandboxHost } from '../../src/sandbox/host';
import { onCleanup, repoRoot, tempDir } from './tmp';
import { actionOutcome, hookOrThrow } from './hookrun';

export class Sandbox extends SandboxHost {
  constructor(config: Record<string, unknown> = {}, charmDir = repoRoot) {
    super({ root: tempDir('sbx'), charmDir, hooktool: path.join(repoRoot, 'dist', 'hooktool.js'), config });
    // Hooks may start a supervisord here (install does); it stops before the dir is removed.
    onCleanup(() => this.shutdown());
  }

  /** Runs a hook and fails the test with the charm's last logs if it exits non-zero. */
  async hook(name: string): Promise<DispatchResult> {
    return hookOrThrow(this.unit, name, () => this.dispatch(`hooks/${name}`));
  }

  async action(name: string, params: Record<string, unknown> = {}) {
    return actionOutcome(this.unit, () => this.dispatch(`actions/${name}`, { actionParams: params }));
  }

  get status(): { status: string; message: string } | null {
    return this.unit.state().unitStatus;
  }

  programFile(name: string): string {
    return this.paths.programFile(name);
  }
}
