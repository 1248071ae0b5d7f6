/**
 * Which kind of image is on the card, told apart as upstream does, by what its mounted
 * partitions hold (mount points are named after the partitions' labels).
 */

export const IMAGE_TYPES = ['ce-oem-iot-before-24', 'ce-oem-iot-24-and-beyond', 'tegra', 'pi-desktop', 'ubuntu', 'core', 'core20', 'ubuntu-cpc', 'unknown'] as const;
export type ImageType = (typeof IMAGE_TYPES)[number];

/** Upstream's identifying paths, tried in this order after the ce-oem-iot and tegra checks: the first that exists wins. */
export const IMAGE_PATH_IDS: readonly (readonly [string, ImageType])[] = [
  ['writable/usr/bin/firefox', 'pi-desktop'],
  ['writable/etc', 'ubuntu'],
  ['writable/system-data', 'core'],
  ['ubuntu-seed/snaps', 'core20'],
  ['cloudimg-rootfs/etc/cloud/cloud.cfg', 'ubuntu-cpc'],
];

/** ce-oem-iot images say what they are in writable/.disk/info. */
export const CE_OEM_INFO = 'writable/.disk/info';
/** Tegra images ship firmware in writable/lib/firmware/<something>-tegra<something>/. */
export const TEGRA_FIRMWARE_GLOB = 'writable/lib/firmware/*-tegra*/';

/**
 * The release in a ce-oem-iot build stamp, `iot-<project>-<series>-classic-(server|desktop)-<n>`
 * or `iot-<project>-<series>-core-<n>`: 2204 or 22, say. None when the text has no such stamp.
 */
export function ceOemIotRelease(info: string): number | undefined {
  const match = /iot-[a-z]+-[a-z-]*(?:classic-(?:server|desktop)-([0-9]+)|core-([0-9]+))/.exec(info);
  const digits = match?.[1] ?? match?.[2];
  return digits === undefined ? undefined : Number(digits);
}

/** 2404 and 24 are both "24 and beyond": a release is a YYMM stamp when it is above 2000, else a YY one. */
export function ceOemIotType(release: number): ImageType {
  const yy = release > 2000 ? Math.floor(release / 100) : release;
  return yy >= 24 ? 'ce-oem-iot-24-and-beyond' : 'ce-oem-iot-before-24';
}

/** What detection asks of the mounted card; paths are relative to the mount directory. */
export interface ImageProbe {
  /** The text of a small file, or undefined when it cannot be read. */
  read(relative: string): Promise<string | undefined>;
  exists(relative: string): Promise<boolean>;
  /** Whether a shell glob matches a directory. */
  matchesDir(glob: string): Promise<boolean>;
}

export async function detectImageType(probe: ImageProbe): Promise<ImageType> {
  const info = await probe.read(CE_OEM_INFO);
  const release = info === undefined ? undefined : ceOemIotRelease(info);
  if (release !== undefined) return ceOemIotType(release);
  if (await probe.matchesDir(TEGRA_FIRMWARE_GLOB)) return 'tegra';
  for (const [relative, type] of IMAGE_PATH_IDS) {
    if (await probe.exists(relative)) return type;
  }
  return 'unknown';
}

/** VERSION_ID's major number from an os-release file (`VERSION_ID="24.04"` -> 24); NaN when absent. */
export function osReleaseMajor(osRelease: string): number {
  const line = osRelease.split('\n').find((l) => l.startsWith('VERSION_ID='));
  const value = (line ?? '').slice('VERSION_ID='.length).replace(/"/g, '').trim();
  return /^[0-9]+(\.|$)/.test(value) ? Number.parseInt(value, 10) : Number.NaN;
}
