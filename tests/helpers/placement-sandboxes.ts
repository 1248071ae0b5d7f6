/**
 * Units of one application as sandboxes (placement-units.ts's seam): each its own AGENT_HOST_ROOT,
 * hostname (`host-<n>`), emulated hook tools and real supervisord, driven through the charm's
 * real dispatch. The peer relation is written into each unit's emulated state before a hook and
 * read back after it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dispatchEvent } from '../../src/hooktools/emulator';
import type { EmulatedRelation } from '../../src/hooktools/state';
import { statusFromName } from '../../src/ops/status';
import { APP, PEERS, PeerNetwork, RELATION_ID, type HookInput, type HookOutput, type PeerHook, type PeerMember } from './placement-units';
import { hookOrThrow } from './hookrun';
import { Sandbox } from './sandbox';

/** supervisord states in which the agent's process is alive. */
const LIVE = new Set(['STARTING', 'RUNNING', 'STOPPING']);

export class SandboxMember implements PeerMember {
  readonly sandbox: Sandbox;
  constructor(readonly name: string, n: number, config: Record<string, unknown>) {
    this.sandbox = new Sandbox(config);
    fs.mkdirSync(path.join(this.sandbox.root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(this.sandbox.root, 'etc', 'hostname'), `host-${n}\n`);
  }

  async run(hook: PeerHook, input: HookInput): Promise<HookOutput> {
    const unit = this.sandbox.unit;
    const logsBefore = unit.state().logs.length;
    unit.update((s) => {
      s.leader = input.leader;
      s.appStatus = input.appStatus ? { status: input.appStatus.name, message: input.appStatus.message } : null;
      s.relations = input.relation ? [{ ...(input.relation as EmulatedRelation), remoteApp: APP, remoteAppData: {} }] : [];
    });
    const relation = hook.relationKind ? { id: RELATION_ID, remoteApp: APP, ...(hook.remoteUnit ? { remoteUnit: hook.remoteUnit } : {}), ...(hook.departingUnit ? { departingUnit: hook.departingUnit } : {}) } : undefined;
    const options = { charmDir: this.sandbox.charmDir, unitName: this.name, env: { AGENT_HOST_ROOT: this.sandbox.root }, ...(relation ? { relation } : {}) };
    await hookOrThrow(unit, hook.name, () => dispatchEvent(unit, `hooks/${hook.name}`, options));
    const after = unit.state();
    const toStatus = (s: { status: string; message: string } | null) => (s ? statusFromName(s.status, s.message) : undefined);
    return {
      relation: after.relations.find((r) => r.endpoint === PEERS),
      appStatus: toStatus(after.appStatus),
      unitStatus: toStatus(after.unitStatus),
      logs: after.logs.slice(logsBefore).map((l) => l.message),
    };
  }

  async running(): Promise<string[]> {
    if (!fs.existsSync(this.sandbox.paths.supervisorPidFile)) return [];
    return [...this.sandbox.programs()].filter(([, p]) => LIVE.has(p.state)).map(([name]) => name).sort();
  }
}

/** Sandboxed units with real supervisords. */
export class PeerSandboxes extends PeerNetwork<SandboxMember> {
  constructor(config: Record<string, unknown>) {
    super((name, n) => new SandboxMember(name, n, config));
  }
}
