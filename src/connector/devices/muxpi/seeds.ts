/**
 * The files put on the card so that the test image's first boot makes the default test user,
 * `ubuntu` with password `ubuntu` (upstream's test_username and test_password defaults), and
 * lets it log in over SSH with that password. Cloud-init (NoCloud) reads them on classic, Core
 * and Tegra images; Raspberry Pi desktops before 25.04 use oem-config with a preseed instead.
 */

/** The NoCloud instance id: a fresh one makes cloud-init treat the boot as a first boot. */
export const CLASSIC_META_DATA = 'instance_id: cloud-image\n';

/** Classic images: the image's default user gets the password, never expiring, and SSH takes passwords. */
export const CLASSIC_USER_DATA = `#cloud-config
password: ubuntu
chpasswd:
  expire: false
  list:
    - ubuntu:ubuntu
ssh_pwauth: true
`;

/** ce-oem-iot images have no default user: this one is made, in the groups an IoT test needs. */
export const CE_OEM_IOT_USER_DATA = `#cloud-config
ssh_pwauth: true
users:
  - name: ubuntu
    gecos: ubuntu
    uid: 1000
    shell: /bin/bash
    lock_passwd: false
    plain_text_passwd: ubuntu
    groups: [adm, audio, cdrom, dialout, dip, floppy, lxd, netdev, plugdev, render, sudo, video]
chpasswd:
  expire: false
  list: |
    ubuntu:ubuntu
`;

/** SHA-512 crypt of "ubuntu", for the configs that take a hashed password. */
const UBUNTU_PASSWORD_HASH = '$6$tfmuxpiSeedA1$wNTmxEnegIEiNqOrmH/C2VPgqxWdfms8nMbJcZEOV3bmAJ64b9tfyKkZfFWNqgQ4JoSNgWjuXoJNDazjLyJoJ1';

/** Ubuntu Core 20 and later: a cloud.cfg.d drop-in on ubuntu-seed, NoCloud only, with a sudo user. */
export const CORE20_NOCLOUD_CFG = `#cloud-config
datasource_list: [NoCloud, None]
users:
  - name: ubuntu
    passwd: "${UBUNTU_PASSWORD_HASH}"
    lock_passwd: false
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
`;

/** Raspberry Pi desktop 25.04 and later: cloud-init makes the user, installs the SSH server and logs it in on the desktop. */
export const PI_DESKTOP_USER_DATA = `#cloud-config
users:
  - name: ubuntu
    passwd: "${UBUNTU_PASSWORD_HASH}"
    lock_passwd: false
    shell: /bin/bash
    sudo: ALL=(ALL) NOPASSWD:ALL
ssh_pwauth: true
packages:
  - openssh-server
write_files:
  - path: /etc/gdm3/custom.conf
    content: |
      [daemon]
      AutomaticLoginEnable = true
      AutomaticLogin = ubuntu
`;

/** Raspberry Pi desktop before 25.04: oem-config runs unattended on the first boot, answering from /preseed.cfg. */
export const PI_DESKTOP_OEM_CONFIG_SERVICE = `[Unit]
Description=Unattended end-user configuration on the first boot (Testflinger)
ConditionFileIsExecutable=/usr/sbin/oem-config-firstboot
ConditionPathExists=/dev/tty1
ConditionKernelCommandLine=!boot=casper
ConditionKernelCommandLine=!single
ConditionKernelCommandLine=!rescue
ConditionKernelCommandLine=!emergency

[Service]
Type=oneshot
StandardInput=tty
StandardOutput=tty
StandardError=tty
TTYPath=/dev/tty1
TTYReset=yes
TTYVHangup=yes
# debconf may still be busy on the first boot: its answers are loaded once it takes them.
ExecStart=/bin/sh -ec 'until debconf-set-selections /preseed.cfg; do sleep 30; done; exec oem-config-firstboot --automatic'

[Install]
WantedBy=oem-config.target
`;

/** The answers oem-config reads: US English, the ubuntu user logged in automatically, and the SSH server installed. */
export const PI_DESKTOP_PRESEED = `d-i debian-installer/locale string en_US.UTF-8
d-i localechooser/languagelist select en
d-i console-setup/ask_detect boolean false
d-i keyboard-configuration/xkb-keymap select us
d-i keyboard-configuration/layoutcode string us
d-i time/zone string Etc/UTC
d-i clock-setup/utc boolean true
d-i netcfg/get_hostname string ubuntu
d-i passwd/user-fullname string Ubuntu User
d-i passwd/username string ubuntu
d-i passwd/user-password password ubuntu
d-i passwd/user-password-again password ubuntu
d-i passwd/auto-login boolean true
d-i user-setup/allow-password-weak boolean true
d-i user-setup/encrypt-home boolean false
ubiquity languagechooser/language-name select English
ubiquity countrychooser/shortlist select US
ubiquity localechooser/supported-locales multiselect en_US.UTF-8
ubiquity ubiquity/summary note
ubiquity ubiquity/reboot boolean true
ubiquity ubiquity/success_command string systemctl start NetworkManager; apt-get update; apt-get install -y ssh; apt-get clean
`;

/** Passwordless sudo for the test user, where the image's own setup does not give it. */
export const SUDOERS_UBUNTU = 'ubuntu ALL=(ALL) NOPASSWD:ALL\n';
