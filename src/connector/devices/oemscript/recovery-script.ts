/**
 * The script the connector copies to the device and runs there: it downloads the OEM image,
 * writes it onto the recovery partition with the agent's public key, and starts the vendor's
 * restore. The device reboots into the restore a few seconds after the script has returned.
 * Its arguments arrive quoted; it quotes every expansion in turn.
 */

/** Where the script, the key and the image go: relative to the test user's home, which a restore replaces. */
export const RECOVERY_DIR = 'testflinger-recovery';
/** Left in the home of the system being replaced; a restored system has a new home without it. */
export const OLD_SYSTEM_MARKER = '.testflinger-old-system';

/** ubr: the ubuntu-recovery GRUB entry; dell: Dell's restore tool. */
export type RestoreMethod = 'ubr' | 'dell';

/** Usage: sh oem-recovery.sh <image url> <ubr|dell> <public key file> */
export const RECOVERY_SCRIPT = `#!/bin/sh
set -eu
url=$1 method=$2 keyfile=$3
work="$HOME/${RECOVERY_DIR}"
image="$work/image.iso"
touch "$HOME/${OLD_SYSTEM_MARKER}"

echo "downloading $url"
curl --fail --silent --show-error --location --retry 3 --output "$image" "$url"

# The recovery partition follows the EFI system partition on its disk (nvme0n1p1 -> nvme0n1p2).
efi=$(sudo lsblk -lnpo NAME,PARTTYPE | awk 'tolower($2) == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" { print $1; exit }')
if [ -z "$efi" ]; then echo "no EFI system partition on the device" >&2; exit 3; fi
recovery="\${efi%?}2"

echo "writing the image onto $recovery"
sudo umount /cdrom /mnt 2>/dev/null || true
sudo mount -o loop,ro "$image" /mnt
sudo mount "$recovery" /cdrom
sudo rsync -a --delete --exclude=efi /mnt/ /cdrom/
# The restored system lets the agent in with its key, as the one replaced did.
sudo mkdir -p /cdrom/testflinger
sudo cp "$keyfile" /cdrom/testflinger/authorized_keys
echo "ubiquity ubiquity/success_command string mkdir -p /target/home/$(id -un)/.ssh; cp /cdrom/testflinger/authorized_keys /target/home/$(id -un)/.ssh/; chroot /target chown -R $(id -un): /home/$(id -un)/.ssh" | sudo tee -a /cdrom/preseed/project.cfg >/dev/null
sudo umount /mnt /cdrom

echo "starting the restore ($method)"
case "$method" in
  ubr)
    printf 'GRUB_DEFAULT="ubuntu-recovery restore"\\nGRUB_TIMEOUT_STYLE=menu\\nGRUB_TIMEOUT=5\\n' | sudo tee /etc/default/grub.d/automatic-oem-config.cfg >/dev/null
    sudo update-grub
    nohup sudo sh -c 'sleep 2; reboot' >/dev/null 2>&1 &
    ;;
  dell)
    nohup sudo sh -c 'sleep 2; dell-restore-system -y' >/dev/null 2>&1 &
    ;;
  *) echo "unknown restore method $method" >&2; exit 2 ;;
esac
`;
