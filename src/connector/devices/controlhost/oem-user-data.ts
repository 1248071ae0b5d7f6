/**
 * The autoinstall user-data control_host_kvm sends for `autoinstall_oem` (as upstream's connector
 * sends its own): an Ubuntu OEM desktop install that keeps a factory-reset partition. The OEM
 * installer media carries the hooks it calls (/cdrom/sideloads, /factory-reset, /sp-bootstrap);
 * the disk it installs to is given by INSTALL_DISKS.
 */
import { parse as parseYaml } from 'yaml';

/**
 * autoinstall's storage.layout.match (at its indentation in both user-data files): the first
 * internal disk of these kinds; of /dev/sda devices, the largest, so not the installer's USB stick.
 */
export const INSTALL_DISKS = `      match:
        - path: /dev/dm*
        - path: /dev/md*
        - path: /dev/nvme0n1
        - path: /dev/pmem*
        - path: /dev/mmcblk0
        - path: /dev/sda
          size: largest
        - path: /dev/sdb
        - path: /dev/vda`;

export const OEM_USER_DATA = `#cloud-config
# Shown on the installer's splash while it starts.
bootcmd:
  - ['plymouth', 'display-message', '--text', 'Starting installer...']

autoinstall:
  version: 1
  source:
    id: ubuntu-desktop
  storage:
    layout:
      name: direct
      reset-partition: 12G
${INSTALL_DISKS}
  late-commands:
    # The OEM media's own step, then the factory-reset entry hidden from the firmware's boot menu.
    - "bash /cdrom/sideloads/hook.sh reset-media-late-commands"
    - "mv /factory-reset/EFI /factory-reset/efi.factory || true"
    - "sed -i 's#/EFI/boot/bootx64.efi#/efi.factory/boot/bootx64.efi#g' /target/etc/grub.d/99_reset || true"
    # Boot options for the first boots (removed by the OEM tooling once the system is set up).
    - "echo 'GRUB_CMDLINE_LINUX_DEFAULT=\\"quiet splash nomodeset modprobe.blacklist=nouveau nouveau.modeset=0\\" # remove-before-flight' >> /target/etc/default/grub"
    - "curtin in-target --target=/target -- update-grub"
    - "bash /factory-reset/cloud-configs/grub/switch-stage.sh /factory-reset/cloud-configs/grub/reset-partition.cfg /factory-reset/boot/grub/grub.cfg"
  user-data:
    # The installed system's first boot runs the OEM early-welcome step, then reboots.
    bootcmd:
      - "bash /sp-bootstrap/hook.sh early-welcome"
    power_state:
      mode: "reboot"
      message: "early-welcome setup complete, rebooting..."
      timeout: 30
`;

/** The storage layout the user-data names, sent beside it as upstream does. */
export function oemStorageLayout(): string {
  const doc = parseYaml(OEM_USER_DATA) as { autoinstall: { storage: { layout: { name: string } } } };
  return doc.autoinstall.storage.layout.name;
}
