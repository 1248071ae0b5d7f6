/**
 * firmware_update, the connector's for every device type as upstream's base connector, through the
 * phase scripts. The device is a real sshd on 127.0.0.1 whose sessions answer DMI (and play fwupd);
 * the HPE route's `maas` and `ilorest` are stand-ins on the connector's PATH, and HPE's firmware
 * repository is a real HTTP server on 127.0.0.1.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FirmwareMachine, FWUPD_DEVICES, SYSTEM_FIRMWARE_ID } from '../helpers/fwupd-machine';
import { BMC, BEFORE, HpeServer, inventory, NEWEST_PACK, OLDER_PACK, type HpeLabOptions } from '../helpers/hpe-server';
import { agentWithJob, errorFile, runPhase } from '../helpers/phase-script';
import { freePort, sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let clientHome: string;
let clientKey: KeyPair;
const sshds: TestSshd[] = [];
const machines: FirmwareMachine[] = [];

beforeAll(() => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
});
afterAll(async () => {
  machines.forEach((machine) => machine.stop());
  for (const sshd of sshds) await sshd.stopAndWait();
});

const MAAS_KEYS = { maas_user: 'lab-maas', node_id: 'x7kq3a', node_name: 'dut-1' };

interface FirmwareLabOptions {
  type?: string;
  /** firmware_update_data; none: the job has none. */
  data: Record<string, unknown> | undefined;
  device?: Record<string, unknown>;
  hpe?: HpeLabOptions;
}

/** A device answering over SSH as `machine`, its config for `type` (maas2 by default), and the HPE surroundings. */
async function firmwareLab(machine: FirmwareMachine, options: FirmwareLabOptions) {
  machines.push(machine);
  const hpe = await new HpeServer(options.hpe).start();
  const port = await freePort();
  const sshd = await new TestSshd().start([clientKey.publicKey], { port, sessionPath: machine.bin });
  sshds.push(sshd);
  machine.watch(sshd);
  const type = options.type ?? 'maas2';
  const device = {
    device_ip: '127.0.0.1',
    ssh_port: port,
    agent_name: 'agent-1',
    test_username: os.userInfo().username,
    ...(type === 'maas2' ? MAAS_KEYS : {}),
    firmware_reboot_timeout_seconds: 20,
    firmware_poll_seconds: 0.3,
    firmware_hpe_repo_url: hpe.repoUrl,
    ...options.device,
  };
  const dirs = agentWithJob(device, options.data === undefined ? {} : { firmware_update_data: options.data });
  const run = () => runPhase(dirs, type, 'firmware_update', { ...hpe.env(), HOME: clientHome });
  return { dirs, hpe, run };
}

const DELL_DESKTOP = { vendor: 'Dell Inc.', type: 3 };
/** An HPE rack server (SMBIOS chassis type 23, Rack Mount Chassis). */
const HPE_RACK = { vendor: 'HPE', type: 23 };

describe('firmware_update through LVFS (fwupd on the device), as upstream for HP, Dell and Lenovo machines', () => {
  it('upgrades each updatable component whose newest LVFS release is an upgrade, reboots, and checks fwupd\'s results (exit 0)', async () => {
    const machine = new FirmwareMachine(DELL_DESKTOP);
    const { dirs, hpe, run } = await firmwareLab(machine, { data: { version: 'latest' } });
    const result = await run();
    expect(result).toMatchObject({ code: 0 });
    expect(machine.sudoCalls()).toEqual([
      'sudo cat /sys/class/dmi/id/chassis_vendor',
      'sudo cat /sys/class/dmi/id/chassis_type',
      'sudo apt update',
      'sudo apt install -y fwupd',
      'sudo fwupdmgr --version',
      'sudo fwupdmgr refresh --force',
      'sudo fwupdmgr get-devices --json',
      `sudo fwupdmgr upgrade ${SYSTEM_FIRMWARE_ID} -y --no-reboot-check`,
      'sudo reboot',
      `sudo fwupdmgr get-results ${SYSTEM_FIRMWARE_ID} --json`,
    ]);
    expect(machine.events).toEqual(['reboot']);
    expect(result.out).toMatch(/firmware: .* is a "Dell Inc\." "Desktop": LVFS/);
    expect(result.out).toContain('firmware: "System Firmware": current version "1.14.0" - LVFS upgrades: "1.15.1" - LVFS downgrades: "1.13.2"');
    expect(result.out).toContain('firmware: "Thunderbolt host controller": current version "36.00" - no available firmware on LVFS');
    expect(result.out).toContain('firmware: "UEFI dbx" has the latest firmware LVFS has');
    expect(result.out).toContain('firmware: "System Firmware": firmware "1.14.0" -> "1.15.1"');
    expect(result.out).not.toContain('Touchpad');
    expect(hpe.calls('maas')).toEqual([]);
    expect(fs.existsSync(path.join(dirs.runDir, 'device-connector-error.json'))).toBe(false);
  });

  it('is every type\'s phase: a noprovision device (no MAAS keys) is updated the same way (exit 0)', async () => {
    const machine = new FirmwareMachine({ vendor: 'LENOVO', type: 35 });
    const { hpe, run } = await firmwareLab(machine, { type: 'noprovision', data: { version: 'latest' } });
    const result = await run();
    expect(result).toMatchObject({ code: 0 });
    expect(result.out).toMatch(/firmware: .* is a "LENOVO" "Mini PC": LVFS/);
    expect(result.out).toContain('firmware: "System Firmware": firmware "1.14.0" -> "1.15.1"');
    expect(machine.events).toEqual(['reboot']);
    expect(hpe.calls('maas')).toEqual([]);
  });

  it('a machine whose firmware is all at LVFS\'s newest is not rebooted (exit 0)', async () => {
    const machine = new FirmwareMachine({ vendor: 'LENOVO', type: 35 }, 'landed', { Devices: [FWUPD_DEVICES.Devices[1]] });
    const { run } = await firmwareLab(machine, { data: { version: 'latest' } });
    const result = await run();
    expect(result).toMatchObject({ code: 0 });
    expect(result.out).toContain('firmware: nothing was upgraded: no reboot');
    expect(machine.sudoCalls()).not.toContain('sudo reboot');
  });

  it('an upgrade that fwupd reports FAILED after the reboot fails the phase (exit 1), naming fwupd\'s error', async () => {
    const { run } = await firmwareLab(new FirmwareMachine({ vendor: 'HP', type: 13 }, 'failed'), { data: { version: 'latest' } });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toContain('firmware: "System Firmware": FAILED: "failed to write capsule: ESP not mounted"');
    expect(result.out).toContain('firmware: the update failed: the firmware version did not update successfully');
  });

  it('with ignore_failure, the same failure lets the job go on (exit 0)', async () => {
    const { run } = await firmwareLab(new FirmwareMachine({ vendor: 'HP', type: 13 }, 'failed'), { data: { version: 'latest', ignore_failure: true } });
    const result = await run();
    expect(result.code).toBe(0);
    expect(result.out).toContain('firmware: the update failed: the firmware version did not update successfully');
    expect(result.out).toContain('ignore_failure is set: the job goes on');
  });

  it('a machine that does not come back from the reboot fails the phase (exit 1)', async () => {
    const { run } = await firmwareLab(new FirmwareMachine(DELL_DESKTOP, 'gone'), { data: { version: 'latest' }, device: { firmware_reboot_timeout_seconds: 3 } });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toMatch(/firmware: the update failed: Failed to SSH to .* within 3s after the reboot/);
  });

  it.each([
    ['a laptop (no route upstream either)', { vendor: 'LENOVO', type: 10 }, { version: 'latest' }, /DMI chassis_vendor "LENOVO", chassis_type "Notebook": no firmware update route for this device/],
    ['a version other than latest for LVFS', DELL_DESKTOP, { version: '1.13.2' }, /firmware_update_data.version "1.13.2": an LVFS device is updated to "latest" only/],
  ])('%s: the update fails (exit 1) before anything is installed', async (_what, dmi, data, message) => {
    const machine = new FirmwareMachine(dmi);
    const { run } = await firmwareLab(machine, { data });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toMatch(message);
    expect(machine.sudoCalls()).toEqual(['sudo cat /sys/class/dmi/id/chassis_vendor', 'sudo cat /sys/class/dmi/id/chassis_type']);
  });

  it('a job without firmware_update_data fails the phase as the job\'s fault (exit 1)', async () => {
    const machine = new FirmwareMachine(DELL_DESKTOP);
    const { dirs, run } = await firmwareLab(machine, { data: undefined });
    const result = await run();
    expect(result.code).toBe(1);
    expect(errorFile(dirs)['firmware_update_exception_info']).toMatchObject({ exception_name: 'JobError', exception_message: expect.stringMatching(/firmware_update_data: Required/) });
    expect(machine.sudoCalls()).toEqual([]);
  });
});

const ROM_PKG = 'U30_3.40_10_01_2024.fwpkg';
const ILO_PKG = 'ilo5_308.fwpkg';
const LOGIN = `ilorest login ${BMC.power_address} -u ${BMC.power_user} -p ${BMC.power_pass}`;

describe('firmware_update of an HPE server through its BMC (ilorest), as upstream', () => {
  it('latest: reads the BMC from MAAS, flashes the newest pack\'s packages that differ (system ROM first), reboots until POST finishes, checks the inventory (exit 0)', async () => {
    const { hpe, run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { data: { version: 'latest' } });
    const result = await run();
    expect(result).toMatchObject({ code: 0 });
    expect(hpe.calls('maas')).toEqual(['maas lab-maas node power-parameters x7kq3a']);
    expect(hpe.calls('ilorest')).toEqual([
      'ilorest --version',
      LOGIN,
      'ilorest rawget /redfish/v1/UpdateService/FirmwareInventory/ --expand --silent',
      'ilorest systeminfo --system --json',
      'ilorest taskqueue',
      'ilorest taskqueue -c',
      'ilorest taskqueue',
      LOGIN,
      expect.stringMatching(new RegExp(`^ilorest flashfwpkg --forceupload /\\S+/${ROM_PKG}$`)),
      LOGIN,
      LOGIN,
      expect.stringMatching(new RegExp(`^ilorest flashfwpkg --forceupload /\\S+/${ILO_PKG}$`)),
      LOGIN,
      LOGIN,
      'ilorest types',
      'ilorest reboot',
      LOGIN,
      'ilorest select ComputerSystem --refresh',
      'ilorest get Oem/Hpe/PostState --json',
      'ilorest logout',
      LOGIN,
      'ilorest rawget /redfish/v1/UpdateService/FirmwareInventory/ --expand --silent',
      'ilorest logout',
    ]);
    expect(hpe.flashed()).toEqual([ROM_PKG, ILO_PKG]);
    expect(hpe.requests).toEqual([
      '/SDR/repo/fwpp-gen10/',
      '/SDR/repo/fwpp-gen10/current/fwrepodata/fwrepo.json',
      `/SDR/repo/fwpp-gen10/${NEWEST_PACK}/fwrepodata/fwrepo.json`,
      `/SDR/repo/fwpp-gen10/${NEWEST_PACK}/${ROM_PKG}`,
      `/SDR/repo/fwpp-gen10/${NEWEST_PACK}/${ILO_PKG}`,
    ]);
    expect(result.out).toMatch(/firmware: .* is a "HPE" "Rack Mount Chassis": HPE/);
    expect(result.out).toContain(`firmware packs in ${hpe.repoUrl}fwpp-gen10/: ${NEWEST_PACK}, ${OLDER_PACK}, 2023.09.00.00_hotfix_1`);
    expect(result.out).toContain('firmware: [Embedded NIC] no update is needed, already "22.31.6"');
    expect(result.out).toContain('firmware: [System ROM] firmware flashed: "U30 v2.90 (07/20/2023)" -> "U30 v3.40 (10/01/2024)"');
    expect(result.out).toContain('firmware: [iLO 5] firmware flashed: "2.96 Aug 17 2023" -> "3.08 Oct 02 2024"');
    expect(result.out).not.toContain(BMC.power_pass);
  });

  it('a pack named by version is flashed from that pack (an older one: a downgrade), its targets from the current index', async () => {
    const after = inventory({ ilo: '3.00 Mar 01 2024', rom: BEFORE.Members[1]?.Version ?? '' });
    const { hpe, run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { data: { version: OLDER_PACK }, hpe: { after } });
    const result = await run();
    expect(result).toMatchObject({ code: 0 });
    expect(hpe.flashed()).toEqual(['ilo5_300.fwpkg']);
    expect(hpe.requests).toContain(`/SDR/repo/fwpp-gen10/${OLDER_PACK}/ilo5_300.fwpkg`);
    expect(result.out).toContain('firmware: [iLO 5] firmware flashed: "2.96 Aug 17 2023" -> "3.00 Mar 01 2024"');
  });

  it('a flash the BMC refuses leaves the firmware as it was: the update fails (exit 1)', async () => {
    const { hpe, run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { data: { version: 'latest' }, hpe: { failingFlash: ROM_PKG } });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toContain(`firmware: ${ROM_PKG}: the flash failed (exit 1): "Component flash failed: invalid signature"`);
    expect(result.out).toContain('firmware: [System ROM] firmware update failed: "U30 v2.90 (07/20/2023)", not "3.40_10-01-2024"');
    expect(result.out).toContain('firmware: the update failed: the firmware version did not update successfully');
    expect(hpe.calls('ilorest')).toContain('ilorest reboot');
  });

  it('with ignore_failure, the same failure lets the job go on (exit 0)', async () => {
    const { run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { data: { version: 'latest', ignore_failure: true }, hpe: { failingFlash: ROM_PKG } });
    const result = await run();
    expect(result.code).toBe(0);
    expect(result.out).toContain('firmware: the update failed: the firmware version did not update successfully');
    expect(result.out).toContain('ignore_failure is set: the job goes on');
  });

  it('a device config without maas_user and node_id fails as upstream\'s "MAAS info isn\'t provided" (exit 1), before any ilorest', async () => {
    const { hpe, run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { type: 'noprovision', data: { version: 'latest' } });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toContain("firmware: the update failed: MAAS info isn't provided");
    expect(hpe.calls('maas')).toEqual([]);
    expect(hpe.calls('ilorest')).toEqual([]);
  });

  it('a pack the repository does not list fails the update (exit 1) before anything is flashed', async () => {
    const { hpe, run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { data: { version: '2022.01.0' } });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toContain('SPP "2022.01.0" is not available in HPE FW repository');
    expect(hpe.flashed()).toEqual([]);
  });

  it('a BMC that refuses the login fails the update (exit 1); the password MAAS gave is masked in what is printed', async () => {
    const wrong = { ...BMC, power_pass: 'not-the-BMC-pass' };
    const { hpe, run } = await firmwareLab(new FirmwareMachine(HPE_RACK), { data: { version: 'latest' }, hpe: { powerParameters: wrong } });
    const result = await run();
    expect(result.code).toBe(1);
    expect(result.out).toContain(`ilorest login ${BMC.power_address} -u ${BMC.power_user} -p ******** failed (exit 32): "Login failed with password ********"`);
    expect(result.out).not.toContain(wrong.power_pass);
    expect(hpe.calls('ilorest')).toEqual(['ilorest --version', `ilorest login ${BMC.power_address} -u ${BMC.power_user} -p ${wrong.power_pass}`]);
  });
});
