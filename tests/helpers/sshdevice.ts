/**
 * Stand-ins for devices that boot from a card written through a control host (muxpi and its
 * kind), built on real sshd processes (./sshd.ts) on 127.0.0.1:
 *
 * - `CardImage`/`makeCardImage`: a test image format. A card (or USB stick) is a plain file: one
 *   JSON line naming the image and its partitions (label and files), then padding. The stand-in
 *   tools read and write that header as a real system reads partition tables and file systems.
 * - `SdMuxControlHost`: the control host, an sshd whose sessions find stand-ins first on PATH:
 *   `stm` and `sd-mux-ctrl` (the MuxPi's switch), `muxctl` (a mux CLI with `sdwire` and
 *   `typecmux`), `sudo` (records the command and runs it), `dd` (refuses a card that is not
 *   switched here; can fail half-way or stall), `lsblk -J`, `mount`/`umount` (a partition's files
 *   appear under the mount point and are written back onto the card on umount) and `hdparm`.
 *   The card is the file `dev/sda` under its dir while switched to the control host, and
 *   `dut/sd` while switched to the device (the USB stick: `dev/sdb` and `dut/usb`).
 * - `RebootingDevice`: the device. `powerCycleCommand` is what a reboot_script runs: the device's
 *   sshd goes away, and when the card on its side holds an image the test calls bootable, it
 *   comes back after a delay as another sshd (a new host key and home) on the same port.
 *
 * Every stand-in records what it was asked (`calls()`, `events`), for tests to check.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TestSshd } from './sshd';
import { eventually, tempDir } from './tmp';

/** A partition of a test image: its label, and its files by path (a path ending in "/" is an empty directory). */
export interface CardPartition {
  label: string;
  files: Record<string, string>;
}

export interface CardImage {
  image: string;
  partitions: CardPartition[];
}

/** The image as it is written to the card: the header line, then `padBytes` of zeros (so a write can break half-way). */
export function makeCardImage(card: CardImage, padBytes = 256 * 1024): Buffer {
  return Buffer.concat([Buffer.from(`${JSON.stringify(card)}\n`), Buffer.alloc(padBytes)]);
}

/** Compressed with the real zstd, as images are served (`xz` works too: zstdcat reads both). */
export function zstd(data: Buffer): Buffer {
  return execFileSync('zstd', ['-q', '-c'], { input: data, maxBuffer: 64 * 1024 * 1024 });
}

/** The image on a card file, or undefined when the file is missing or holds no whole header. */
export function readCard(file: string): CardImage | undefined {
  try {
    const data = fs.readFileSync(file);
    const end = data.indexOf(0x0a);
    return end < 0 ? undefined : (JSON.parse(data.subarray(0, end).toString()) as CardImage);
  } catch {
    return undefined;
  }
}

/** The one program behind the stand-in tools: `node sdmux.js <state dir> <tool> <args...>`. */
const SDMUX_JS = String.raw`
const fs = require('fs');
const path = require('path');
const [dir, tool, ...args] = process.argv.slice(2);
const log = (line) => fs.appendFileSync(path.join(dir, 'calls.log'), line + '\n');
const media = { sd: { host: 'dev/sda', dut: 'dut/sd' }, usb: { host: 'dev/sdb', dut: 'dut/usb' } };
const fail = (message, code = 1) => { process.stderr.write(message + '\n'); process.exit(code); };
function move(medium, to) {
  const m = media[medium];
  const from = path.join(dir, to === 'host' ? m.dut : m.host);
  const dest = path.join(dir, m[to]);
  if (fs.existsSync(from)) fs.renameSync(from, dest);
  fs.writeFileSync(path.join(dir, medium + '.side'), to + '\n');
  return dest;
}
function header(file) {
  const data = fs.readFileSync(file);
  const end = data.indexOf(10);
  if (end < 0) return { card: undefined, tail: data };
  try { return { card: JSON.parse(data.subarray(0, end).toString()), tail: data.subarray(end + 1) }; } catch { return { card: undefined, tail: data }; }
}
function partition(dev) {
  const m = /^\/dev\/([a-z]+)([0-9]+)$/.exec(dev);
  if (!m) fail('mount: ' + dev + ': no such partition', 32);
  return { file: path.join(dir, 'dev', m[1]), index: Number(m[2]) - 1 };
}
const mountsFile = path.join(dir, 'mounts.json');
const mounts = () => (fs.existsSync(mountsFile) ? JSON.parse(fs.readFileSync(mountsFile, 'utf8')) : {});
function walk(root, rel = '', out = {}) {
  const entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
  if (entries.length === 0 && rel) out[rel + '/'] = '';
  for (const e of entries) {
    const r = rel ? rel + '/' + e.name : e.name;
    if (e.isDirectory()) walk(root, r, out);
    else out[r] = fs.readFileSync(path.join(root, r), 'utf8');
  }
  return out;
}
log([tool, ...args].join(' '));
switch (tool) {
  case 'stm': {
    if (args.includes('-ts')) move('sd', 'host');
    else if (args.includes('-dut')) move('sd', 'dut');
    else fail('stm: expected -ts or -dut');
    break;
  }
  case 'sd-mux-ctrl': {
    if (args.includes('--ts')) move('sd', 'host');
    else if (args.includes('--dut')) move('sd', 'dut');
    else fail('sd-mux-ctrl: expected --ts or --dut');
    break;
  }
  case 'muxctl': {
    const medium = { sdwire: 'sd', typecmux: 'usb' }[args[0]];
    if (!medium) fail('muxctl: unknown device ' + args[0]);
    if (args[1] === 'plug_to_self') process.stdout.write(move(medium, 'host') + '\n');
    else if (args[1] === 'set' && args[2] === 'DUT') move(medium, 'dut');
    else if (args[1] === 'set' && args[2] === 'TS') move(medium, 'host');
    else fail('muxctl: bad command');
    break;
  }
  case 'lsblk': {
    const dev = args[args.length - 1];
    if (!fs.existsSync(dev)) fail('lsblk: ' + dev + ': not a block device', 32);
    const { card } = header(dev);
    const name = path.basename(dev);
    const children = (card ? card.partitions : []).map((p, i) => ({ name: name + (i + 1), label: p.label }));
    process.stdout.write(JSON.stringify({ blockdevices: [{ name, label: null, children }] }, null, 3) + '\n');
    break;
  }
  case 'mount': {
    const [dev, point] = args;
    const { file, index } = partition(dev);
    if (!fs.existsSync(file)) fail('mount: ' + dev + ': special device does not exist', 32);
    const { card } = header(file);
    const part = card && card.partitions[index];
    if (!part) fail('mount: ' + dev + ': wrong fs type, bad option, bad superblock', 32);
    for (const [rel, content] of Object.entries(part.files)) {
      const target = path.join(point, rel);
      if (rel.endsWith('/')) fs.mkdirSync(target, { recursive: true });
      else { fs.mkdirSync(path.dirname(target), { recursive: true }); fs.writeFileSync(target, content); }
    }
    fs.writeFileSync(mountsFile, JSON.stringify({ ...mounts(), [path.resolve(point)]: { file, index } }));
    break;
  }
  case 'umount': {
    const all = mounts();
    let failed = false;
    for (const point of args) {
      const m = all[path.resolve(point)];
      if (!m) { process.stderr.write('umount: ' + point + ': not mounted.\n'); failed = true; continue; }
      const { card, tail } = header(m.file);
      card.partitions[m.index].files = walk(point);
      fs.writeFileSync(m.file, Buffer.concat([Buffer.from(JSON.stringify(card) + '\n'), tail]));
      fs.rmSync(point, { recursive: true, force: true });
      fs.mkdirSync(point);
      delete all[path.resolve(point)];
    }
    fs.writeFileSync(mountsFile, JSON.stringify(all));
    if (failed) process.exit(32);
    break;
  }
  case 'hdparm': {
    const dev = args[args.length - 1];
    if (!fs.existsSync(dev)) fail(dev + ': No such file or directory', 2);
    break;
  }
  default:
    fail('sdmux: unknown tool ' + tool);
}
`;

export interface ControlHostOptions {
  /** The card breaks after this many bytes are written to it: dd fails with an I/O error. */
  failAfterBytes?: number;
  /** dd hangs this long (seconds, bounded) before writing anything: a flash that never finishes. */
  stallSeconds?: number;
}

export class SdMuxControlHost {
  readonly dir = tempDir('ctlhost');
  readonly bin = path.join(this.dir, 'bin');
  readonly sshd = new TestSshd();

  constructor(private readonly options: ControlHostOptions = {}) {
    for (const sub of ['bin', 'dev', 'dut', 'mnt']) fs.mkdirSync(path.join(this.dir, sub));
    fs.writeFileSync(path.join(this.dir, 'sdmux.js'), SDMUX_JS);
    const script = (name: string, body: string) => fs.writeFileSync(path.join(this.bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    for (const tool of ['stm', 'sd-mux-ctrl', 'muxctl', 'lsblk', 'mount', 'umount', 'hdparm']) script(tool, `exec ${process.execPath} ${this.dir}/sdmux.js ${this.dir} ${tool} "$@"`);
    script('sudo', `echo "sudo $*" >> ${this.dir}/calls.log\nexec "$@"`);
    script('dd', this.ddScript());
  }

  /** dd as the card sees it: only a card switched here can be written; it may break or stall as the options say. */
  private ddScript(): string {
    const { failAfterBytes, stallSeconds } = this.options;
    const lines = [
      `echo "dd $*" >> ${this.dir}/calls.log`,
      'of=; for a in "$@"; do case "$a" in of=*) of=${a#of=} ;; esac; done',
      '[ -e "$of" ] || { echo "dd: failed to open \'$of\': No such device or address" >&2; exit 1; }',
    ];
    if (stallSeconds !== undefined) lines.push(`sleep ${Math.min(stallSeconds, 60)}`);
    if (failAfterBytes !== undefined) lines.push(`head -c ${failAfterBytes} | /bin/dd "$@" 2>/dev/null; echo "dd: error writing '$of': Input/output error" >&2; exit 1`);
    lines.push('exec /bin/dd "$@"');
    return lines.join('\n');
  }

  async start(agentKey: string): Promise<this> {
    await this.sshd.start([agentKey], { sessionPath: this.bin });
    return this;
  }

  /** The card's block device on the control host (default.yaml's test_device). */
  get testDevice(): string {
    return path.join(this.dir, 'dev', 'sda');
  }

  get mountDir(): string {
    return path.join(this.dir, 'mnt');
  }

  /** The file of a medium on the device's side: what the device boots from. */
  deviceSide(medium: 'sd' | 'usb' = 'sd'): string {
    return path.join(this.dir, 'dut', medium);
  }

  /** Puts a card (or stick) with `card` on it in the device's side of the mux, as before a job. */
  insert(card: CardImage, medium: 'sd' | 'usb' = 'sd'): void {
    fs.writeFileSync(this.deviceSide(medium), makeCardImage(card));
  }

  /** Which side each medium was last switched to ("host" or "dut"), undefined if never. */
  side(medium: 'sd' | 'usb' = 'sd'): string | undefined {
    const file = path.join(this.dir, `${medium}.side`);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : undefined;
  }

  /** Every stand-in call, in order: "stm -ts", "sudo dd of=... bs=16M", "dd of=...", "mount /dev/sda2 ...". */
  calls(): string[] {
    const file = path.join(this.dir, 'calls.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trimEnd().split('\n') : [];
  }

  /** An ssh client config block that reaches this control host as `alias`, for the agents' ~/.ssh/config. */
  sshConfigBlock(alias: string): string {
    return this.sshd.clientConfigBlock(alias);
  }

  async stop(): Promise<void> {
    await this.sshd.stopAndWait();
  }
}

export interface RebootingDeviceOptions {
  /** The agents' public key: the booted system accepts it. */
  agentKey: string;
  /** The file the device boots from (SdMuxControlHost.deviceSide()). */
  bootMedium: string;
  /** Whether an image boots; an image that does not leaves the device silent. */
  boots: (card: CardImage) => boolean;
  /** How long a boot takes. */
  bootMs?: number;
}

export class RebootingDevice {
  readonly dir = tempDir('dut');
  /** What a reboot_script runs: one power cycle; it returns once the device has gone down. */
  readonly powerCycleCommand = path.join(this.dir, 'power-cycle');
  private readonly request = path.join(this.dir, 'power-cycle.request');
  /** "power cycle", then "booted <image>" or "did not boot" (no card, or an image that does not boot). */
  readonly events: string[] = [];
  /** The sshd of the system that runs now, if any: each boot is another one. */
  current: TestSshd | undefined;
  port = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private pendingBoot: NodeJS.Timeout | undefined;

  constructor(private readonly options: RebootingDeviceOptions) {
    fs.writeFileSync(this.powerCycleCommand, `#!/bin/sh\ntouch ${this.request}\nfor i in $(seq 200); do [ -e ${this.request} ] || exit 0; sleep 0.05; done\necho "the device did not power cycle" >&2\nexit 1\n`, { mode: 0o755 });
  }

  /** Starts watching for power cycles; `up`: the device runs (the card's system) from the start. */
  async start(port: number, up: boolean): Promise<this> {
    this.port = port;
    if (up) this.current = await new TestSshd().start([this.options.agentKey], { port });
    this.timer = setInterval(() => void this.tick(), 50);
    return this;
  }

  private async tick(): Promise<void> {
    if (this.busy || !fs.existsSync(this.request)) return;
    this.busy = true;
    try {
      this.events.push('power cycle');
      clearTimeout(this.pendingBoot);
      await this.current?.stopAndWait();
      this.current = undefined;
      fs.rmSync(this.request);
      const card = readCard(this.options.bootMedium);
      if (!card || !this.options.boots(card)) {
        this.events.push('did not boot');
        return;
      }
      this.pendingBoot = setTimeout(() => void this.boot(card), this.options.bootMs ?? 500);
    } finally {
      this.busy = false;
    }
  }

  private async boot(card: CardImage): Promise<void> {
    this.current = await new TestSshd().start([this.options.agentKey], { port: this.port });
    this.events.push(`booted ${card.image}`);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.pendingBoot);
    await eventually(() => !this.busy, 'the device to finish a power cycle', 10_000);
    await this.current?.stopAndWait();
  }
}
