/**
 * A machine with fwupd, for firmware_update tests: the stand-in commands its sshd's sessions find
 * first on PATH, and the reboots it is asked for, played on that sshd.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestSshd } from './sshd';
import { tempDir } from './tmp';

/** fwupd's view of a Dell desktop: firmware with an upgrade on LVFS, one at its newest, one LVFS has nothing for, one not updatable. */
export const SYSTEM_FIRMWARE_ID = '3f6d1ad8a1e2b6a5c1b4d3e2f1a0b9c8d7e6f5a4';
export const FWUPD_DEVICES = {
  Devices: [
    { Name: 'System Firmware', DeviceId: SYSTEM_FIRMWARE_ID, Version: '1.14.0', Flags: ['internal', 'updatable', 'require-ac'], Releases: [{ Version: '1.15.1', Flags: ['is-upgrade'] }, { Version: '1.14.0', Flags: [] }, { Version: '1.13.2', Flags: ['is-downgrade'] }] },
    { Name: 'UEFI dbx', DeviceId: '9b1c7e2d4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c', Version: '371', Flags: ['updatable'], Releases: [{ Version: '371', Flags: [] }] },
    { Name: 'Thunderbolt host controller', DeviceId: '0c2e4a6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c', Version: '36.00', Flags: ['updatable'] },
    { Name: 'Touchpad', DeviceId: '5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c', Version: '1.0', Flags: [] },
  ],
};

/** What fwupd reports after the reboot: the new release landed, the capsule failed, or the machine never comes back. */
export type AfterReboot = 'landed' | 'failed' | 'gone';

/**
 * A machine with fwupd, for firmware_update: its sessions' `sudo` reads DMI from this directory,
 * installs nothing (apt), and plays fwupdmgr on FWUPD_DEVICES; `sudo reboot` asks watch() to
 * restart the machine's sshd, the upgrades it was told of landed or failed.
 */
export class FirmwareMachine {
  readonly dir = tempDir('fw-machine');
  readonly bin = path.join(this.dir, 'bin');
  readonly sudoLog = path.join(this.dir, 'sudo.log');
  private readonly pending = path.join(this.dir, 'pending');
  private readonly rebootRequest = path.join(this.dir, 'reboot');
  private readonly results = path.join(this.dir, 'results');
  readonly events: string[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    dmi: { vendor: string; type: number },
    private readonly afterReboot: AfterReboot = 'landed',
    devices: object = FWUPD_DEVICES,
  ) {
    fs.mkdirSync(this.bin);
    fs.mkdirSync(this.results);
    fs.writeFileSync(path.join(this.dir, 'devices.json'), JSON.stringify(devices));
    fs.writeFileSync(path.join(this.dir, 'chassis_vendor'), `${dmi.vendor}\n`);
    fs.writeFileSync(path.join(this.dir, 'chassis_type'), `${dmi.type}\n`);
    fs.writeFileSync(
      path.join(this.bin, 'sudo'),
      `#!/bin/sh
echo "sudo $*" >> ${this.sudoLog}
case "$1 $2" in
  "cat /sys/class/dmi/id/chassis_vendor") cat ${this.dir}/chassis_vendor ;;
  "cat /sys/class/dmi/id/chassis_type") cat ${this.dir}/chassis_type ;;
  "apt update"|"apt install") exit 0 ;;
  "fwupdmgr --version") echo "runtime   org.freedesktop.fwupd  1.9.16" ;;
  "fwupdmgr refresh") echo "Successfully downloaded new metadata" ;;
  "fwupdmgr get-devices") echo "WARNING: UEFI capsule updates not available" >&2; cat ${this.dir}/devices.json ;;
  "fwupdmgr upgrade") echo "$3" >> ${this.pending}; echo "Scheduling firmware update" ;;
  "fwupdmgr get-results") cat ${this.results}/$3.json 2>/dev/null || { echo "No results found" >&2; exit 2; } ;;
  reboot*) touch ${this.rebootRequest} ;;
  *) exit 1 ;;
esac
`,
      { mode: 0o755 },
    );
  }

  sudoCalls(): string[] {
    return fs.existsSync(this.sudoLog) ? fs.readFileSync(this.sudoLog, 'utf8').trimEnd().split('\n') : [];
  }

  /** Plays the reboots the machine is asked for, on `sshd`. */
  watch(sshd: TestSshd): this {
    let busy = false;
    this.timer = setInterval(() => {
      if (busy || !fs.existsSync(this.rebootRequest)) return;
      busy = true;
      fs.rmSync(this.rebootRequest);
      void this.reboot(sshd).finally(() => (busy = false));
    }, 100);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async reboot(sshd: TestSshd): Promise<void> {
    this.events.push('reboot');
    const ids = fs.existsSync(this.pending) ? fs.readFileSync(this.pending, 'utf8').trim().split('\n') : [];
    for (const id of ids) {
      const landed = this.afterReboot === 'landed';
      const result = landed ? { Releases: [{ Version: '1.15.1' }], UpdateState: 2 } : { Releases: [{ Version: '1.15.1' }], UpdateState: 3, UpdateError: 'failed to write capsule: ESP not mounted' };
      fs.writeFileSync(path.join(this.results, `${id}.json`), JSON.stringify(result));
    }
    if (this.afterReboot === 'gone') return sshd.stopAndWait();
    await sshd.restart(1500);
  }
}
