/**
 * A custom storage layout, applied through MAAS as upstream does it: each layout disk is given
 * the first free physical block device big enough for its partitions, the machine's storage is
 * cleared, then disks, partitions, formats and mounts are applied in that order.
 */
import { JobError } from '../../errors';
import { quoted } from '../../../common/text';
import type { MaasCli } from './cli';
import { sizeInBytes, type DiskEntry, type FormatEntry, type LayoutEntry, type MountEntry, type PartitionEntry, type StorageLayout } from './config';

/** A block device as `maas <profile> block-devices read <node>` lists it. */
export interface BlockDevice {
  id: number;
  type: string;
  size?: string | number;
  filesystem?: { mount_point?: string | null } | null;
  partitions?: { id: number }[];
}

/** Layout disk id → the block device it is put on, and each partition's size in bytes. */
export interface LayoutPlan {
  blockOf: Map<string, BlockDevice>;
  partitionBytes: Map<string, number>;
}

function ofType<T extends LayoutEntry['type']>(layout: StorageLayout, type: T): Extract<LayoutEntry, { type: T }>[] {
  return layout.filter((entry): entry is Extract<LayoutEntry, { type: T }> => entry.type === type);
}

/** The layout disk an entry ends up on, following format → partition → disk. */
function diskOf(layout: StorageLayout, entry: LayoutEntry): string {
  const byId = new Map(layout.map((e) => [e.id, e]));
  let current: LayoutEntry | undefined = entry;
  while (current && current.type !== 'disk') current = byId.get(current.type === 'format' ? current.volume : current.device);
  return current?.id ?? '';
}

/**
 * Chooses block devices and partition sizes: physical devices in MAAS's order, the first one not
 * taken that holds all of a disk's partitions (at their `size`); `alloc_pct` then sizes a
 * partition as a share of the device it landed on. A layout that does not fit is the job's fault.
 */
export function planLayout(layout: StorageLayout, blockDevices: readonly BlockDevice[]): LayoutPlan {
  const blockOf = new Map<string, BlockDevice>();
  const physical = blockDevices.filter((device) => device.type === 'physical');
  for (const disk of ofType(layout, 'disk')) {
    const needed = ofType(layout, 'partition')
      .filter((partition) => partition.device === disk.id)
      .reduce((sum, partition) => sum + sizeInBytes(partition.size), 0);
    const taken = new Set([...blockOf.values()].map((device) => device.id));
    const chosen = physical.find((device) => !taken.has(device.id) && Number(device.size ?? 0) >= needed);
    if (!chosen) throw new JobError(`storage layout: no free block device on the machine holds disk ${quoted(disk.id)} (its partitions need ${needed} bytes)`);
    blockOf.set(disk.id, chosen);
  }
  const partitionBytes = new Map<string, number>();
  for (const partition of ofType(layout, 'partition')) {
    const deviceBytes = Number(blockOf.get(partition.device)?.size ?? 0);
    partitionBytes.set(partition.id, partition.alloc_pct === undefined ? sizeInBytes(partition.size) : Math.ceil((deviceBytes * partition.alloc_pct) / 100));
  }
  return { blockOf, partitionBytes };
}

/** Removes partitions, mounts and file systems from every non-virtual block device. */
async function clearStorage(maas: MaasCli, node: string, blockDevices: readonly BlockDevice[]): Promise<void> {
  for (const device of blockDevices.filter((d) => d.type !== 'virtual')) {
    for (const partition of device.partitions ?? []) await maas.once(['partition', 'delete', node, String(device.id), String(partition.id)]);
    if (device.filesystem) {
      if (device.filesystem.mount_point) await maas.once(['block-device', 'unmount', node, String(device.id)]);
      await maas.once(['block-device', 'unformat', node, String(device.id)]);
    }
  }
}

/** Applies the layout; every step is one CLI call, and the first that fails ends it, naming the entry. */
class LayoutWriter {
  private readonly partitionIds = new Map<string, string>();

  constructor(
    private readonly maas: MaasCli,
    private readonly node: string,
    private readonly layout: StorageLayout,
    private readonly plan: LayoutPlan,
  ) {}

  private block(entry: LayoutEntry): string {
    return String(this.plan.blockOf.get(diskOf(this.layout, entry))?.id);
  }

  async disk(disk: DiskEntry): Promise<void> {
    const bootMount = ofType(this.layout, 'mount').some((mount) => diskOf(this.layout, mount) === disk.id && mount.path.startsWith('/boot'));
    if (disk.boot || bootMount) await this.maas.once(['block-device', 'set-boot-disk', this.node, this.block(disk)]);
    if (disk.name) await this.maas.once(['block-device', 'update', this.node, this.block(disk), `name=${disk.name}`]);
  }

  async partition(partition: PartitionEntry): Promise<void> {
    const created = await this.maas.json<{ id: number }>(['partitions', 'create', this.node, this.block(partition), `size=${this.plan.partitionBytes.get(partition.id)}`], false);
    this.partitionIds.set(partition.id, String(created.id));
  }

  async format(format: FormatEntry): Promise<void> {
    const label = format.label === undefined ? [] : [`label=${format.label}`];
    const partitionId = this.partitionIds.get(format.volume);
    if (partitionId) await this.maas.once(['partition', 'format', this.node, this.block(format), partitionId, `fstype=${format.fstype}`, ...label]);
    else await this.maas.once(['block-device', 'format', this.node, this.block(format), `fstype=${format.fstype}`, ...label]);
  }

  async mount(mount: MountEntry): Promise<void> {
    const format = this.layout.find((entry): entry is FormatEntry => entry.type === 'format' && entry.id === mount.device);
    const partitionId = format && this.partitionIds.get(format.volume);
    if (partitionId) await this.maas.once(['partition', 'mount', this.node, this.block(mount), partitionId, `mount_point=${mount.path}`]);
    else await this.maas.once(['block-device', 'mount', this.node, this.block(mount), `mount_point=${mount.path}`]);
  }

  async write(): Promise<void> {
    const steps: { [T in LayoutEntry['type']]: (entry: Extract<LayoutEntry, { type: T }>) => Promise<void> } = {
      disk: (e) => this.disk(e),
      partition: (e) => this.partition(e),
      format: (e) => this.format(e),
      mount: (e) => this.mount(e),
    };
    for (const type of ['disk', 'partition', 'format', 'mount'] as const) {
      for (const entry of ofType(this.layout, type)) {
        try {
          await (steps[type] as (e: LayoutEntry) => Promise<void>)(entry);
        } catch (error) {
          throw new JobError(`storage layout: MAAS refused ${type} ${quoted(entry.id)}: ${(error as Error).message}`, { cause: error });
        }
      }
    }
  }
}

/** Reads the machine's block devices, plans, clears and writes the layout. */
export async function applyStorageLayout(maas: MaasCli, node: string, layout: StorageLayout): Promise<void> {
  const blockDevices = await maas.json<BlockDevice[]>(['block-devices', 'read', node]);
  const plan = planLayout(layout, blockDevices);
  await clearStorage(maas, node, blockDevices);
  await new LayoutWriter(maas, node, layout, plan).write();
}
