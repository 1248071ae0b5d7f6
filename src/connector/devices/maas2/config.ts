/**
 * maas2's keys: in default.yaml (upstream's names and defaults) and in the job's provision_data.
 * Every value that reaches the `maas` command line has a strict pattern; the storage layout is
 * checked whole (types, references, percentages) before anything is sent to MAAS.
 */
import { z } from 'zod';
import { deviceConfigSchema, describeIssues, type DeviceConfig, type JobFile } from '../../config';
import { JobError } from '../../errors';
import { quoted } from '../../../common/text';
import { serialConsoleKeys } from '../../serial';
import { patternString } from '../../validate';

/** A MAAS CLI profile (`maas login <profile> ...`), as the agent host has it logged in. */
export const profileName = patternString(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a MAAS profile name (letters, digits, "_", ".", "-")');
/** A MAAS system id (`abc123`). */
export const systemId = patternString(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'a MAAS system id (letters, digits, "_", "-")');
/** distro_series and hwe_kernel values: `jammy`, `ubuntu/noble`, `hwe-22.04`, `ga-24.04`. */
const seriesName = patternString(/^[a-z0-9][a-z0-9._/-]{0,63}$/, 'a MAAS series or kernel name (lower-case letters, digits, ".", "_", "/", "-")');
const osName = patternString(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'a MAAS operating system name (ubuntu, centos, custom)');
const archName = patternString(/^[a-z0-9_]{1,32}(\/[a-z0-9_]{1,32})?$/, 'an architecture (amd64, arm64/generic)');

/** Sizes as upstream takes them: bytes, or a number with K, M, G, T or B (powers of 1000), any case. */
const SIZE = /^(\d+(?:\.\d+)?)([KMGTB]?)$/i;
const UNIT_POWER: Record<string, number> = { '': 0, B: 0, K: 1, M: 2, G: 3, T: 4 };

export function sizeInBytes(size: string): number {
  const [, amount = '0', unit = ''] = SIZE.exec(size) ?? [];
  return Math.round(Number(amount) * 1000 ** (UNIT_POWER[unit.toUpperCase()] ?? 0));
}

const sizeString = z
  .union([z.string(), z.number().int().nonnegative().transform(String)])
  .pipe(patternString(SIZE, 'a size (bytes, or a number ending in K, M, G, T or B)'));
/** Entry ids are names within the layout; MAAS never sees them. Upstream allows numbers. */
const entryId = z.union([z.string().min(1).max(128), z.number().int().transform(String)]);

const diskEntry = z.object({
  type: z.literal('disk'),
  id: entryId,
  disk: z.union([z.number().int().nonnegative(), z.string()]).optional(),
  ptable: z.enum(['gpt', 'msdos']).optional(),
  /** Reaches MAAS as `name=`: shows up in /dev/disk/by-dname/. */
  name: patternString(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a disk name (letters, digits, "_", ".", "-")').optional(),
  boot: z.boolean().optional(),
});
const partitionEntry = z.object({
  type: z.literal('partition'),
  id: entryId,
  /** The id of the disk entry it is on. */
  device: entryId,
  number: z.number().int().positive().optional(),
  /** The least it needs (the disk is chosen by it); its size too unless alloc_pct is given. */
  size: sizeString,
  alloc_pct: z.number().int().min(1).max(100).optional(),
});
const formatEntry = z.object({
  type: z.literal('format'),
  id: entryId,
  /** The id of the partition or disk entry it formats. */
  volume: entryId,
  fstype: patternString(/^[a-z0-9]{2,16}$/, 'a file system type (ext4, xfs, fat32, ...)'),
  label: patternString(/^[A-Za-z0-9_.-]{0,64}$/, 'a file system label (letters, digits, "_", ".", "-"; at most 64)').optional(),
});
const mountEntry = z.object({
  type: z.literal('mount'),
  id: entryId,
  /** The id of the format entry it mounts. */
  device: entryId,
  path: patternString(/^(?!.*(^|\/)\.\.?(\/|$))\/[A-Za-z0-9_.\/-]{0,255}$/, 'an absolute mount path (letters, digits, "_", ".", "-", "/"; no "." or ".." parts)'),
});

const layoutEntry = z.discriminatedUnion('type', [diskEntry, partitionEntry, formatEntry, mountEntry]);
export type LayoutEntry = z.output<typeof layoutEntry>;
export type DiskEntry = z.output<typeof diskEntry>;
export type PartitionEntry = z.output<typeof partitionEntry>;
export type FormatEntry = z.output<typeof formatEntry>;
export type MountEntry = z.output<typeof mountEntry>;

/** What each reference must point at. */
const REFERENCES: Record<string, { key: 'device' | 'volume'; to: readonly LayoutEntry['type'][] }> = {
  partition: { key: 'device', to: ['disk'] },
  format: { key: 'volume', to: ['disk', 'partition'] },
  mount: { key: 'device', to: ['format'] },
};

/** Ids unique, references resolved to the right kind of entry, no disk given more than 100%. */
function checkLayout(entries: LayoutEntry[], ctx: z.RefinementCtx): void {
  const byId = new Map<string, LayoutEntry>();
  entries.forEach((entry, i) => {
    if (byId.has(entry.id)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'id'], message: `${quoted(entry.id)} is the id of an earlier entry` });
    else byId.set(entry.id, entry);
  });
  const percentOfDisk = new Map<string, number>();
  entries.forEach((entry, i) => {
    const rule = REFERENCES[entry.type];
    if (!rule) return;
    const target = (entry as Record<string, unknown>)[rule.key] as string;
    const found = byId.get(target);
    if (!found || !rule.to.includes(found.type)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, rule.key], message: `${quoted(target)} is not the id of a ${rule.to.join(' or ')} entry` });
    }
    if (entry.type === 'partition' && entry.alloc_pct !== undefined) percentOfDisk.set(entry.device, (percentOfDisk.get(entry.device) ?? 0) + entry.alloc_pct);
  });
  for (const [disk, percent] of percentOfDisk) {
    if (percent > 100) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [], message: `the partitions on disk ${quoted(disk)} take ${percent}% (alloc_pct), more than 100%` });
  }
}

export const storageLayoutSchema = z.array(layoutEntry).min(1).superRefine(checkLayout);
export type StorageLayout = z.output<typeof storageLayoutSchema>;

export const maas2ConfigSchema = deviceConfigSchema.extend({
  maas_user: profileName,
  node_id: systemId,
  /** Shown in messages; MAAS's hostname for the machine, where the lab records it. */
  node_name: z.string().optional(),
  /** Put network boot first in the EFI boot order before each deploy (over SSH, best effort). */
  reset_efi: z.boolean().default(false),
  /** Clear the TPM before each deploy (over SSH; deploys first when the installed system cannot). */
  clear_tpm: z.boolean().default(false),
  /** How long a deploy may take before it counts as failed. */
  timeout_min: z.number().positive().default(60),
  /** The storage layout set back before a job that asks for none; without it, MAAS's flat layout. */
  default_disks: storageLayoutSchema.optional(),
  /** The device's serial console (a TCP console server), logged during provision and test as upstream. */
  ...serialConsoleKeys,
  /** Our extensions: how often to ask MAAS how a deploy goes, how long a release may take, the first retry's pause. */
  maas_poll_seconds: z.number().positive().default(60),
  maas_release_wait_seconds: z.number().positive().default(300),
  maas_retry_backoff_seconds: z.number().nonnegative().default(10),
});
export type Maas2Config = z.output<typeof maas2ConfigSchema>;

export const maas2ProvisionSchema = z
  .object({
    /** Upstream's default when a job names none: a safe LTS. */
    distro: seriesName.default('jammy'),
    kernel: seriesName.optional(),
    /** cloud-init user data; sent base64-encoded. */
    user_data: z.string().optional(),
    disks: storageLayoutSchema.optional(),
    /** A RAM-only deploy, where MAAS is 3.5 or later (else a normal deploy). */
    ephemeral: z.boolean().default(false),
    /** Our extensions: the image's operating system (`osystem`) and the machine's architecture. */
    os: osName.optional(),
    arch: archName.optional(),
  })
  .passthrough();
export type Maas2Provision = z.output<typeof maas2ProvisionSchema>;

/** The device config as maas2 reads it; main.ts checked it already, so this cannot fail. */
export function maas2Config(device: DeviceConfig): Maas2Config {
  return maas2ConfigSchema.parse(device);
}

/** The job's provision_data, every problem named by field: the job's fault, so the device stays online. */
export function maas2Provision(job: JobFile): Maas2Provision {
  const parsed = maas2ProvisionSchema.safeParse(job.provision_data ?? {});
  if (!parsed.success) throw new JobError(`bad provision_data: ${describeIssues('testflinger.json', parsed.error, ['provision_data'])}`);
  return parsed.data;
}
