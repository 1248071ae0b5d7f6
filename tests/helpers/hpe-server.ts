/**
 * An HPE server's surroundings, for firmware_update's HPE route: stand-ins for `maas` (the
 * machine's power parameters) and `ilorest` (its BMC: firmware inventory, flashes, task queue,
 * reboot, POST state) first on the connector's PATH, each logging its calls; and HPE's firmware
 * repository, a real HTTP server on 127.0.0.1 with one generation's folder of firmware packs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageServer } from './image-server';
import { tempDir } from './tmp';

export const BMC = { power_address: '127.0.0.9', power_user: 'tf-admin', power_pass: 's3cret-BMC-pass' };

/** Ids from HPE's inventories: which firmware a package carries. */
const ILO_TARGET = '5b2c1a7e-0d4f-4e8a-9c3b-1f6e2d7a8b90';
const ROM_TARGET = '00000000-0000-0000-0000-0000000a1b2c';
const NIC_TARGET = 'c3d4e5f6-0000-4a5b-8c9d-0e1f2a3b4c5d';

function component(name: string, version: string, deviceClass: string | undefined, targets: string[] | undefined) {
  return { Name: name, Version: version, Updateable: targets !== undefined, Oem: { Hpe: { DeviceContext: 'System Board', ...(deviceClass ? { DeviceClass: deviceClass, Targets: targets } : {}) } } };
}

/** The BMC's inventory: iLO and the system ROM behind the newest pack, the NIC at its version, a PSU no pack carries. */
export function inventory(versions: { ilo: string; rom: string }) {
  return {
    Members: [
      component('iLO 5', versions.ilo, 'ilo-class', [ILO_TARGET]),
      component('System ROM', versions.rom, 'rom-class', [ROM_TARGET]),
      component('Embedded NIC', '22.31.6', 'nic-class', [NIC_TARGET]),
      component('Power Supply 1', '1.00', undefined, undefined),
    ],
  };
}
export const BEFORE = inventory({ ilo: '2.96 Aug 17 2023', rom: 'U30 v2.90 (07/20/2023)' });
export const AFTER = inventory({ ilo: '3.08 Oct 02 2024', rom: 'U30 v3.40 (10/01/2024)' });

/** Packs: 2024.09.00.00 (newest) and 2024.03.00.00, each with an index; "current" holds the targets older indexes lack. */
export const NEWEST_PACK = '2024.09.00.00';
export const OLDER_PACK = '2024.03.00.00';
const newestIndex = {
  'ilo5_308.fwpkg': { target: [ILO_TARGET], deviceclass: 'ilo-class', version: '3.08', minimum_active_version: 'null' },
  'U30_3.40_10_01_2024.fwpkg': { target: [ROM_TARGET], deviceclass: 'rom-class', version: '3.40_10-01-2024', minimum_active_version: '2.10' },
  'nic-22.31.6.fwpkg': { target: [NIC_TARGET], deviceclass: 'nic-class', version: '22.31.6', minimum_active_version: 'null' },
  'ilo5_300.fwpkg': { target: [ILO_TARGET], deviceclass: 'ilo-class', version: '3.00', minimum_active_version: 'null' },
  'readme.txt': { target: [ILO_TARGET], deviceclass: 'ilo-class', version: '9.99' },
};
/** An older index, its targets single strings: the current index gives the list. */
const olderIndex = { 'ilo5_300.fwpkg': { target: 'old-id', deviceclass: 'ilo-class', version: '3.00', minimum_active_version: 'null' } };
const currentIndex = { 'ilo5_300.fwpkg': { target: [ILO_TARGET], deviceclass: 'ilo-class', version: '3.00' } };

function listing(packs: string[]): string {
  const rows = [...packs, 'current', 'GPG-KEY-FirmwarePack'].map((name) => `<a href="${name}/">${name}/</a>    2024-10-01 12:00  -`);
  return `<html><head><title>fwpp-gen10</title></head><body><h1>Index of /SDR/repo/fwpp-gen10</h1><pre>\n${rows.join('\n')}\n</pre></body></html>\n`;
}

export interface HpeLabOptions {
  /** The package whose flash the BMC refuses. */
  failingFlash?: string;
  /** What `maas ... power-parameters` prints; BMC by default. */
  powerParameters?: object;
  /** The inventory after a reboot that follows good flashes; AFTER by default. */
  after?: object;
}

export class HpeServer {
  readonly dir = tempDir('hpe');
  readonly bin = path.join(this.dir, 'bin');
  private readonly files = new ImageServer();
  repoUrl = '';

  constructor(options: HpeLabOptions = {}) {
    fs.mkdirSync(this.bin);
    const file = (name: string, content: string) => fs.writeFileSync(path.join(this.dir, name), content);
    file('inventory.json', JSON.stringify(BEFORE));
    file('inventory-after.json', JSON.stringify(options.after ?? AFTER));
    file('power.json', JSON.stringify(options.powerParameters ?? BMC));
    file('tasks', 'Task 1: stale update task\n');
    const script = (name: string, body: string) => fs.writeFileSync(path.join(this.bin, name), `#!/bin/sh\necho "${name} $*" >> ${this.dir}/calls.log\n${body}\n`, { mode: 0o755 });
    script('maas', `[ "$2 $3" = "node power-parameters" ] && cat ${this.dir}/power.json && exit 0\necho "unexpected maas call" >&2; exit 2`);
    // The BMC: every command after ilorest's own options (--nologo --cache-dir=...); it takes the password MAAS gave.
    script(
      'ilorest',
      `[ "$1" = "--nologo" ] || exit 3
case "$2" in --cache-dir=/*) ;; *) exit 3 ;; esac
shift 2
case "$1" in
  --version) echo "RESTful Interface Tool 5.3.0.0" ;;
  login) [ "$2 $3 $4 $5 $6" = "${BMC.power_address} -u ${BMC.power_user} -p ${BMC.power_pass}" ] || { echo "Login failed with password $6" >&2; exit 32; }; echo "Discovering data...Done" ;;
  logout) echo "Logging session out." ;;
  rawget) cat ${this.dir}/inventory.json ;;
  systeminfo) echo '{"system": {"Model": "HPE ProLiant DL380 Gen10", "Serial Number": "X1"}}' ;;
  taskqueue) if [ "$2" = "-c" ]; then rm -f ${this.dir}/tasks; elif [ -f ${this.dir}/tasks ]; then cat ${this.dir}/tasks; else echo "No tasks found"; fi ;;
  flashfwpkg)
    [ "$2" = "--forceupload" ] && grep -qx "fwpkg $(basename "$3")" "$3" || { echo "no such package"; exit 4; }
    [ "$(basename "$3")" = "${options.failingFlash ?? ''}" ] && { echo "Component flash failed: invalid signature"; exit 1; }
    basename "$3" >> ${this.dir}/flashed
    printf 'Updating: |\\rUpdating: /\\rFlash of %s succeeded. iLO will reboot.\\n' "$(basename "$3")" ;;
  types) printf 'Types available:\\nBios.v1_0_0\\nComputerSystem.v1_10_0\\n' ;;
  reboot) touch ${this.dir}/rebooted; [ -f ${this.dir}/flashed ] && ! [ -n "${options.failingFlash ?? ''}" ] && cp ${this.dir}/inventory-after.json ${this.dir}/inventory.json; echo "Server is rebooting." ;;
  select) [ -f ${this.dir}/rebooted ] ;;
  get) echo '{"Oem": {"Hpe": {"PostState": "FinishedPost"}}}' ;;
  *) echo "unknown command $1"; exit 2 ;;
esac`,
    );
  }

  /** Serves the firmware repository on 127.0.0.1; repoUrl is its root. */
  async start(): Promise<this> {
    await this.files.start();
    const generation = 'SDR/repo/fwpp-gen10';
    this.files.add(`${generation}/`, listing([OLDER_PACK, NEWEST_PACK, '2023.09.00.00_hotfix_1']));
    this.files.add(`${generation}/current/fwrepodata/fwrepo.json`, JSON.stringify(currentIndex));
    for (const [pack, index] of [[NEWEST_PACK, newestIndex], [OLDER_PACK, olderIndex]] as const) {
      this.files.add(`${generation}/${pack}/fwrepodata/fwrepo.json`, JSON.stringify(index));
      for (const name of Object.keys(newestIndex)) this.files.add(`${generation}/${pack}/${name}`, `fwpkg ${name}\n`);
    }
    this.repoUrl = this.files.url('SDR/repo/');
    return this;
  }

  /** The path of every request to the repository, in order. */
  get requests(): string[] {
    return this.files.requests;
  }

  /** The connector's PATH: the stand-ins first. */
  env(): Record<string, string> {
    return { PATH: `${this.bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}` };
  }

  calls(program: 'maas' | 'ilorest'): string[] {
    const log = path.join(this.dir, 'calls.log');
    const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trimEnd().split('\n') : [];
    return lines.filter((line) => line.startsWith(`${program} `)).map((line) => line.replace(/ --nologo --cache-dir=\S+/, ''));
  }

  flashed(): string[] {
    const file = path.join(this.dir, 'flashed');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n') : [];
  }
}
