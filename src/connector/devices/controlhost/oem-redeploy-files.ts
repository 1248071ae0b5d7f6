/**
 * oem_autoinstall's url route puts an OEM ISO on the device's reset partition and boots it to
 * reinstall ("redeploy"). Its defaults, as upstream's connector has its own: the user-data the
 * installer and cloud-init read when the job attaches none, and the reset partition's grub.cfg
 * when the job attaches no redeploy_cfg (RP_PARTUUID becomes the partition's PARTUUID).
 *
 * The installed system: an OEM install onto the installer's own disk (offline: the network is
 * off while it installs), account ubuntu with password "insecure" and passwordless sudo, SSH,
 * a desktop that never sleeps or locks and logs ubuntu in, remote desktop (RDP) on with
 * ubuntu/insecure, USB first in the EFI boot order; it reboots once the OEM first-boot step
 * (early-welcome) is done.
 */
import { bootFirstScript, DESKTOP_SETTINGS, GSCHEMA_OVERRIDE, INSECURE_HASH, RESET_USER_SETTINGS, USB_FIRST, writeFilesEntry } from './oem-stock-files';

const RDP_CERTS = '/home/ubuntu/.local/share/gnome-remote-desktop/certificates';

/** Run as ubuntu: a keyring that needs no unlocking holds the RDP credentials; a self-signed certificate for its TLS. */
const RDP_SETUP = `#!/bin/bash
set -e
keyrings="$HOME/.local/share/keyrings"
certs="$HOME/.local/share/gnome-remote-desktop/certificates"
mkdir -p "$keyrings" "$certs"
rm -rf "\${keyrings:?}"/* "\${certs:?}"/*
now=$(date +%s)
echo headless > "$keyrings/default"
cat > "$keyrings/headless.keyring" <<KEYRING
[keyring]
display-name=Default keyring
ctime=$now
mtime=0
lock-on-idle=false
lock-after=false

[1]
item-type=0
display-name=GNOME Remote Desktop RDP credentials
secret={'username': <'ubuntu'>, 'password': <'insecure'>}
mtime=$now
ctime=$now

[1:attribute0]
name=xdg:schema
type=string
value=org.gnome.RemoteDesktop.RdpCredentials
KEYRING
openssl req -x509 -newkey rsa:4096 -nodes -days 365 -subj "/O=Testflinger/CN=OEM Autoinstall" -keyout "$certs/rdp-tls.key" -out "$certs/rdp-tls.crt"
`;

const RDP_SETTINGS = `${DESKTOP_SETTINGS}tls-cert='${RDP_CERTS}/rdp-tls.crt'
tls-key='${RDP_CERTS}/rdp-tls.key'
`;

export const DEFAULT_REDEPLOY_USER_DATA = `#cloud-config
bootcmd:
  - ['plymouth', 'display-message', '--text', 'Starting automated testing installer...']

autoinstall:
  version: 1
  storage:
    layout:
      name: direct
      match:
        install-media: true
  # Offline install: nothing is updated from the network meanwhile.
  early-commands:
    - "nmcli networking off"
  late-commands:
    - "bash /cdrom/sideloads/hook.sh late-commands"
    - "mount -o rw,remount /cdrom"
    # The installer's netplan has no DHCP (the network was off): the image's own config takes over.
    - "curtin in-target --target=/target -- rm /etc/netplan/00-installer-config.yaml || true"
    # The factory-reset entry hidden from the firmware's boot menu.
    - "mv /cdrom/EFI /cdrom/efi.factory || true"
    - "sed -i 's#/EFI/boot/bootx64.efi#/efi.factory/boot/bootx64.efi#g' /target/etc/grub.d/99_reset || true"
    - "echo 'GRUB_CMDLINE_LINUX_DEFAULT=\\"quiet splash nomodeset modprobe.blacklist=nouveau nouveau.modeset=0\\" # remove-before-flight' >> /target/etc/default/grub"
    - "curtin in-target --target=/target -- update-grub"
  shutdown: reboot
  user-data:
    bootcmd:
      - "bash /sp-bootstrap/hook.sh early-welcome"
    users:
      - name: ubuntu
        groups: [adm, sudo]
        sudo: "ALL=(ALL) NOPASSWD:ALL"
        shell: /bin/bash
        lock_passwd: false
        passwd: '${INSECURE_HASH}'
    locale: en_US.UTF-8
    package_upgrade: false
    write_files:
${writeFilesEntry(GSCHEMA_OVERRIDE, RDP_SETTINGS)}
${writeFilesEntry('/usr/bin/set_usb_boot.sh', USB_FIRST, '0755')}
${writeFilesEntry('/usr/bin/set_ubuntu_boot.sh', bootFirstScript('Ubuntu', 'ubuntu'), '0755')}
${writeFilesEntry('/usr/local/bin/rdp-setup', RDP_SETUP, '0755')}
    runcmd:
      - ["sed", "-i", "s|#  AutomaticLoginEnable = true|AutomaticLoginEnable = true|g", "/etc/gdm3/custom.conf"]
      - ["sed", "-i", "s|#  AutomaticLogin = user1|AutomaticLogin = ubuntu|g", "/etc/gdm3/custom.conf"]
      - ["glib-compile-schemas", "/usr/share/glib-2.0/schemas"]
${RESET_USER_SETTINGS}
      - ["/usr/bin/set_usb_boot.sh"]
      # Chrome's repository key may have rotated: apt update fails without the new one.
      - wget -q -O - https://dl.google.com/linux/linux_signing_key.pub | tee /etc/apt/trusted.gpg.d/google-chrome.asc > /dev/null
      - apt-get update -yq
      - apt-get install -y openssh-server gnome-remote-desktop
      - ["sudo", "-u", "ubuntu", "-H", "/usr/local/bin/rdp-setup"]
      - ["systemctl", "--global", "enable", "gnome-remote-desktop"]
    power_state:
      mode: reboot
      message: "early-welcome setup complete, rebooting..."
      timeout: 30
`;

/** The reset partition's boot menu: redeploy with the attached cloud-configs, or the OEM media's own reset. */
export const DEFAULT_REDEPLOY_GRUB_CFG = `set timeout=3
loadfont unicode
set menu_color_normal=white/black
set menu_color_highlight=black/light-gray
if [ -s ($root)/boot/grub/theme/theme.cfg ]; then
  source ($root)/boot/grub/theme/theme.cfg
fi

menuentry "Start redeployment" {
  set gfxpayload=keep
  linux /casper/vmlinuz layerfs-path=minimal.standard.live.hotfix.squashfs nopersistent ds=nocloud\\;s=/cdrom/cloud-configs/redeploy nomodeset modprobe.blacklist=nouveau nouveau.modeset=0 autoinstall rp-partuuid=RP_PARTUUID --- quiet splash
  initrd /casper/initrd
}
menuentry "Start normal reset installation" {
  set gfxpayload=keep
  linux /casper/vmlinuz layerfs-path=minimal.standard.live.hotfix.squashfs nopersistent ds=nocloud\\;s=/cdrom/cloud-configs/reset-media nomodeset modprobe.blacklist=nouveau nouveau.modeset=0 --- quiet splash
  initrd /casper/initrd
}
grub_platform
if [ "$grub_platform" = "efi" ]; then
  menuentry "UEFI firmware settings" {
    fwsetup
  }
fi
`;
