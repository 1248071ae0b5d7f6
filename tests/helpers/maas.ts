/**
 * The emulated MAAS (tests/fixtures/maas/maas) for one test: its state file, the PATH that puts
 * the emulated `maas` first, and views of what the connector asked it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, tempDir } from './tmp';

export const MAAS_BIN = path.join(repoRoot, 'tests', 'fixtures', 'maas');
const GB = 1_000_000_000;

export interface MaasBehaviour {
  deploySeconds: number;
  releaseSeconds: number;
  deployOutcome: 'deployed' | 'failed' | 'hang';
  busy: boolean;
  releaseStuck: boolean;
  markFixedFails: boolean;
  failNext: Record<string, number>;
}

export interface EmulatedMachine {
  status_name: string;
  hostname: string;
  ip_addresses: string[];
  architecture: string;
  block_devices: Record<string, unknown>[];
  deployed?: Record<string, string>;
  boot_disk?: number;
}

interface MaasState {
  profiles: string[];
  distros: string[];
  version: string;
  machines: Record<string, EmulatedMachine & { since: number }>;
  behaviour: MaasBehaviour;
  calls: string[][];
  events: Record<string, { type: string; description: string }[]>;
  installations: Record<string, unknown[]>;
  signalFile: string;
  nextId: number;
}

export class EmulatedMaas {
  readonly dir = tempDir('maas');
  readonly stateFile = path.join(this.dir, 'state.json');
  /** Written when a deploy finishes: the moment the test image "boots". */
  readonly deployedSignal = path.join(this.dir, 'deployed');

  constructor(
    readonly profile = 'lab-maas',
    readonly nodeId = 'x7kq3a',
    behaviour: Partial<MaasBehaviour> = {},
  ) {
    const state: MaasState = {
      profiles: [profile],
      distros: ['focal', 'jammy', 'noble'],
      version: '3.5.1',
      machines: {
        [nodeId]: {
          status_name: 'Deployed',
          hostname: 'dut-maas-1',
          ip_addresses: ['127.0.0.1'],
          architecture: 'amd64/generic',
          since: 0,
          block_devices: [
            { id: 31, name: 'sda', type: 'physical', size: String(250 * GB), filesystem: null, partitions: [{ id: 301, size: String(250 * GB), filesystem: { fstype: 'ext4', mount_point: '/' } }] },
            { id: 32, name: 'sdb', type: 'physical', size: String(1000 * GB), filesystem: { fstype: 'ext4', mount_point: '/srv' }, partitions: [] },
            { id: 33, name: 'md0', type: 'virtual' },
          ],
        },
      },
      behaviour: { deploySeconds: 1.5, releaseSeconds: 0.3, deployOutcome: 'deployed', busy: false, releaseStuck: false, markFixedFails: false, failNext: {}, ...behaviour },
      calls: [],
      events: {},
      installations: {},
      signalFile: this.deployedSignal,
      nextId: 1000,
    };
    fs.writeFileSync(this.stateFile, JSON.stringify(state, null, 2));
  }

  /** The environment a connector needs to reach this MAAS. */
  env(): Record<string, string> {
    return { PATH: `${MAAS_BIN}:${process.env['PATH'] ?? '/usr/bin:/bin'}`, MAAS_EMULATOR_STATE: this.stateFile };
  }

  state(): MaasState {
    return JSON.parse(fs.readFileSync(this.stateFile, 'utf8')) as MaasState;
  }

  machine(): EmulatedMachine {
    const machine = this.state().machines[this.nodeId];
    if (!machine) throw new Error(`no machine ${this.nodeId}`);
    return machine;
  }

  /** Each call as "<words after the profile>", in order. */
  calls(): string[] {
    return this.state().calls.map(([, ...words]) => words.join(' '));
  }

  /** The calls that change the machine's storage. */
  storageCalls(): string[] {
    return this.calls().filter((call) => /^(partition|partitions|block-device) |set-storage-layout/.test(call));
  }
}
