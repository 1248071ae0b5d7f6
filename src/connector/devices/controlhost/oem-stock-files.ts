/**
 * What oem_autoinstall sends with a `stock` ISO (a plain Ubuntu desktop ISO, without the OEM
 * media's own autoinstall files), as upstream's connector sends its own: cloud-init meta-data
 * (empty), an autoinstall user-data, and a grub.cfg whose first entry boots the installer in
 * autoinstall mode, reading them from the media's /cloud-configs/.
 *
 * The installed system: account ubuntu, password "insecure" (oem_autoinstall's default
 * test_password), passwordless sudo, SSH with passwords and the agents' key, a desktop that never
 * sleeps or locks and logs ubuntu in, and USB first in the EFI boot order (so the control host's
 * next ISO boots). Upstream puts one lab's key in authorized-keys; here it is the agents' own.
 */
import { agentPublicKey } from '../../ssh';
import { INSTALL_DISKS } from './oem-user-data';

export const STOCK_META_DATA = '';

/** SHA-512 crypt of "insecure" (salt of our own). */
export const INSECURE_HASH = '$6$tfagenthoststock$ExwijzFNX6GNAL2hAZG0JVxsQTkF0A9KD/qd2VShV1ucxEfVa4eLBFXURXlD4cFIHdSPej1oedOxrLdPo2TCj/';

/**
 * A script (run as root) that puts the first EFI boot entry whose line matches `pattern` (and not
 * `exclude`), case-insensitively, at the head of the boot order.
 */
export function bootFirstScript(what: string, pattern: string, exclude?: string): string {
  const skip = exclude ? ` && line !~ /${exclude}/` : '';
  return `#!/bin/bash
entry=$(efibootmgr -v | awk '{ line = tolower($0) } line ~ /^boot[0-9a-f]+\\*? / && line ~ /${pattern}/${skip} { print substr($1, 5, 4); exit }')
if [ -z "$entry" ]; then echo "No ${what} boot entry found" >&2; exit 1; fi
rest=$(efibootmgr | sed -n 's/^BootOrder: *//p' | tr ',' '\\n' | grep -vix "$entry" | paste -sd, -)
echo "${what} boot entry $entry goes first"
efibootmgr -o "$entry\${rest:+,$rest}"
`;
}

/** USB first, so the control host's next ISO boots; a network boot entry is not a USB stick. */
export const USB_FIRST = bootFirstScript('USB', 'usb', 'ip|mac');

/** Where DESKTOP_SETTINGS go: glib's schema overrides. */
export const GSCHEMA_OVERRIDE = '/usr/share/glib-2.0/schemas/certification.gschema.override';

/** Power saving, screen lock and idle dimming off; remote desktop on. */
export const DESKTOP_SETTINGS = `[org.gnome.settings-daemon.plugins.power]
sleep-inactive-ac-type='nothing'
sleep-inactive-ac-timeout=0
sleep-inactive-battery-type='nothing'
sleep-inactive-battery-timeout=0
idle-dim=false
[org.gnome.desktop.session]
idle-delay=0
[org.gnome.desktop.screensaver]
lock-enabled=false
idle-activation-enabled=false
ubuntu-lock-on-suspend=false
[org.gnome.desktop.remote-desktop.rdp]
enable=true
view-only=false
`;

export function indent(text: string, spaces: number): string {
  return text
    .split('\n')
    .map((line) => (line ? ' '.repeat(spaces) + line : line))
    .join('\n');
}

/** One entry of user-data's write_files (at its indentation). */
export function writeFilesEntry(file: string, content: string, mode?: string): string {
  return [`      - path: ${file}`, ...(mode ? [`        permissions: '${mode}'`] : []), '        content: |', indent(content, 10)].join('\n');
}

/** runcmd lines (at their indentation) that apply DESKTOP_SETTINGS to ubuntu's own session. */
export const RESET_USER_SETTINGS = ['org.gnome.settings-daemon.plugins.power', 'org.gnome.desktop.session', 'org.gnome.desktop.screensaver']
  .map((schema) => `      - ["sudo", "-u", "ubuntu", "-H", "gsettings", "reset-recursively", "${schema}"]`)
  .join('\n');

export function stockUserData(): string {
  const key = agentPublicKey('a system installed from a stock ISO').trim();
  return `#cloud-config
autoinstall:
  version: 1
  identity:
    hostname: stock-desktop
    username: ubuntu
    password: '${INSECURE_HASH}'
  storage:
    layout:
      name: direct
${INSTALL_DISKS}
  ssh:
    allow-pw: true
    authorized-keys:
      - ${JSON.stringify(key)}
  late-commands:
    - curtin in-target -- sed -i 's/^#.*AutomaticLoginEnable.*/AutomaticLoginEnable = true/' /etc/gdm3/custom.conf
    - curtin in-target -- sed -i 's/^#.*AutomaticLogin = .*/AutomaticLogin = ubuntu/' /etc/gdm3/custom.conf
  user-data:
    users:
      - name: ubuntu
        groups: sudo, adm
        sudo: ALL=(ALL) NOPASSWD:ALL
    write_files:
${writeFilesEntry(GSCHEMA_OVERRIDE, DESKTOP_SETTINGS)}
${writeFilesEntry('/usr/bin/set_usb_boot.sh', USB_FIRST, '0755')}
    runcmd:
      - ["glib-compile-schemas", "/usr/share/glib-2.0/schemas"]
${RESET_USER_SETTINGS}
      - ["/usr/bin/set_usb_boot.sh"]
      - ["apt-get", "update"]
      - ["apt-get", "install", "-y", "openssh-server"]
`;
}

export const STOCK_GRUB_CFG = `set timeout=3
loadfont unicode
set menu_color_normal=white/black
set menu_color_highlight=black/light-gray

menuentry "Autoinstall Ubuntu" {
\tset gfxpayload=keep
\tlinux\t/casper/vmlinuz autoinstall ds=nocloud\\;s=/cdrom/cloud-configs/ --- quiet splash
\tinitrd\t/casper/initrd
}
menuentry "Ubuntu (safe graphics)" {
\tset gfxpayload=keep
\tlinux\t/casper/vmlinuz nomodeset --- quiet splash
\tinitrd\t/casper/initrd
}
if [ "$grub_platform" = "efi" ]; then
  menuentry "Boot from next volume" {
\texit 1
  }
  menuentry "UEFI Firmware Settings" {
\tfwsetup
  }
else
  menuentry "Test memory" {
\tlinux16 /boot/memtest86+x64.bin
  }
fi
`;
