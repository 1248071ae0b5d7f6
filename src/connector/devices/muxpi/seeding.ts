/**
 * create_user: what each image type gets on its mounted partitions so that its first boot makes
 * the test user, as upstream seeds it. A plan of steps (pure, so each type's plan is testable),
 * carried out on the control host as root.
 */
import * as path from 'node:path';
import type { ImageType } from './imagetype';
import * as seeds from './seeds';

export type SeedStep =
  | { kind: 'mkdir'; path: string }
  | { kind: 'write'; path: string; content: string }
  /** `rm -f <dir>/99-fake?cloud.cfg`: the raspi images' config that keeps cloud-init from reading the seed. */
  | { kind: 'remove-fake-cloud-cfg'; dir: string }
  /** GRUB waits for no key press: `timeout=0` in boot/grub/grub.cfg, `GRUB_TIMEOUT=0` in etc/default/*. */
  | { kind: 'grub-timeouts'; root: string }
  /** `cp -a` of a file (a unit's link) into a directory. */
  | { kind: 'copy'; from: string; toDir: string };

const NOCLOUD_NET = 'var/lib/cloud/seed/nocloud-net';
const NOCLOUD = 'var/lib/cloud/seed/nocloud';
const CLOUD_CFG_D = 'etc/cloud/cloud.cfg.d';

function nocloudSeed(dir: string, files: { metaData?: string; userData: string }): SeedStep[] {
  return [
    { kind: 'mkdir', path: dir },
    ...(files.metaData === undefined ? [] : [{ kind: 'write' as const, path: path.posix.join(dir, 'meta-data'), content: files.metaData }]),
    { kind: 'write', path: path.posix.join(dir, 'user-data'), content: files.userData },
  ];
}

function sudoers(mount: string): SeedStep {
  return { kind: 'write', path: path.posix.join(mount, 'writable/etc/sudoers.d/ubuntu'), content: seeds.SUDOERS_UBUNTU };
}

/** Classic seeding of a root file system: nocloud-net meta-data and user-data. */
function classicSeed(root: string): SeedStep[] {
  return nocloudSeed(path.posix.join(root, NOCLOUD_NET), { metaData: seeds.CLASSIC_META_DATA, userData: seeds.CLASSIC_USER_DATA });
}

function piDesktopSeed(mount: string, major: number): SeedStep[] {
  const root = path.posix.join(mount, 'writable');
  const systemd = path.posix.join(root, 'etc/systemd/system');
  const steps: SeedStep[] =
    major >= 25
      ? [
          ...nocloudSeed(path.posix.join(root, NOCLOUD_NET), { metaData: seeds.CLASSIC_META_DATA, userData: seeds.PI_DESKTOP_USER_DATA }),
          { kind: 'remove-fake-cloud-cfg', dir: path.posix.join(root, CLOUD_CFG_D) },
        ]
      : [
          { kind: 'write', path: path.posix.join(systemd, 'oem-config.service'), content: seeds.PI_DESKTOP_OEM_CONFIG_SERVICE },
          { kind: 'write', path: path.posix.join(root, 'preseed.cfg'), content: seeds.PI_DESKTOP_PRESEED },
        ];
  // NetworkManager must run during the first-boot configuration too.
  steps.push({ kind: 'copy', from: path.posix.join(systemd, 'multi-user.target.wants/NetworkManager.service'), toDir: path.posix.join(systemd, 'oem-config.target.wants') });
  steps.push(sudoers(mount));
  return steps;
}

/**
 * The steps for `type` on partitions mounted under `mount` (<mount>/<label>). `piDesktopMajor`:
 * the major VERSION_ID of a pi-desktop image (25.04 and later are seeded through cloud-init).
 */
export function seedPlan(type: ImageType, mount: string, piDesktopMajor = Number.NaN): SeedStep[] {
  const writable = path.posix.join(mount, 'writable');
  switch (type) {
    case 'tegra':
      return [...nocloudSeed(path.posix.join(writable, NOCLOUD), { userData: seeds.CLASSIC_USER_DATA }), { kind: 'grub-timeouts', root: writable }, sudoers(mount)];
    case 'pi-desktop':
      return piDesktopSeed(mount, piDesktopMajor);
    case 'core20':
      return [{ kind: 'mkdir', path: path.posix.join(mount, 'ubuntu-seed/data', CLOUD_CFG_D) }, { kind: 'write', path: path.posix.join(mount, 'ubuntu-seed/data', CLOUD_CFG_D, '99_nocloud.cfg'), content: seeds.CORE20_NOCLOUD_CFG }];
    // ce-oem-iot images get their user-data and sudo, and then the classic seed as well, as upstream.
    case 'ce-oem-iot-before-24':
      return [{ kind: 'write', path: path.posix.join(mount, 'system-boot/user-data'), content: seeds.CE_OEM_IOT_USER_DATA }, sudoers(mount), ...classicSeed(writable)];
    case 'ce-oem-iot-24-and-beyond':
      return [...nocloudSeed(path.posix.join(writable, NOCLOUD), { userData: seeds.CE_OEM_IOT_USER_DATA }), sudoers(mount), ...classicSeed(writable)];
    case 'core':
      return classicSeed(path.posix.join(writable, 'system-data'));
    case 'ubuntu-cpc':
      return classicSeed(path.posix.join(mount, 'cloudimg-rootfs'));
    case 'ubuntu':
      return [...classicSeed(writable), { kind: 'remove-fake-cloud-cfg', dir: path.posix.join(writable, CLOUD_CFG_D) }];
    case 'unknown':
      return classicSeed(writable);
  }
}
