/**
 * Emulated boards for the device types that boot images and reach them over SSH (cm3,
 * dragonboard, netboot, oemrecovery). A board is one SSH address (127.0.0.1 and a port) at
 * which one of its images answers at a time: each image is a real sshd of its own (own host key,
 * own home), started on the board's port when the board boots into it.
 *
 * The images' sessions find stand-in programs ("shims") first on PATH. Each shim logs its call
 * to the board's call log. A `sudo` shim runs its command with device paths (/dev/..., /mnt...)
 * moved under the board's fake root, so a block device is a plain file there that receives the
 * image, and /sbin/reboot or any program with a shim runs the shim.
 *
 * Shims, and the agent's own scripts (reboot_script, select_*_script), steer the board by
 * running `board-ctl <request>`, one line in the board's request file, which the board plays
 * shortly after:
 *   select <image>   the image the next boot starts (a boot selector's switch)
 *   reboot           the running image goes down and the selected one boots (a power cycle too)
 *   reset <image>    <image> boots as a fresh install: a new sshd with a new home and host key
 *   down             the running image goes down and nothing boots
 * A selected image that the board does not have never boots: a device that never comes back.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, TestSshd } from './sshd';
import { onCleanup, tempDir } from './tmp';

export interface BoardImage {
  /** Program name -> bash body (after the logging prelude); $BOARD_ROOT, $BOARD_STATE, $BOARD_CTL are set. */
  shims?: Record<string, string>;
  /** Public keys the image lets in from the start. */
  authorized?: string[];
  /** A system user the image lets in by password (./password-user.ts) instead of the test's own user. */
  passwordLoginUser?: string;
  /** Every boot is a fresh install (an image just written to a card): a new sshd, home and host key. */
  freshEachBoot?: boolean;
  /** A service the image runs besides sshd (netboot's imager on HTTP): started on each boot, stopped when it goes down. */
  alsoRuns?: { start(): Promise<void>; stop(): Promise<void> };
}

/** The `sudo` stand-in: logs, moves device paths under the fake root, prefers a shim for the program. */
const SUDO = `args=()
for a in "$@"; do
  case "$a" in
    /dev/*|/mnt|/mnt/*|//mnt/*) a="$BOARD_ROOT/\${a#/}" ;;
    of=/dev/*) a="of=$BOARD_ROOT/\${a#of=/}" ;;
  esac
  args+=("$a")
done
prog=\${args[0]}
[ -x "$BOARD_BIN/\${prog##*/}" ] && args[0]="$BOARD_BIN/\${prog##*/}"
exec "\${args[@]}"`;

export class EmulatedBoard {
  readonly dir = tempDir('board');
  /** The fake root: /dev/mmcblk1 given to sudo is <root>/dev/mmcblk1. */
  readonly root = path.join(this.dir, 'root');
  /** Files shims share with the test (flags such as "initialized"). */
  readonly state = path.join(this.dir, 'state');
  readonly ctl = path.join(this.dir, 'board-ctl');
  readonly events: string[] = [];
  port = 0;
  running: string | undefined;
  selected: string | undefined;
  private readonly requests = path.join(this.dir, 'requests');
  private readonly callLog = path.join(this.dir, 'calls.log');
  private readonly sshds = new Map<string, TestSshd>();
  private handled = 0;
  private busy = false;
  private timer: NodeJS.Timeout | undefined;

  /** `downMs`: how long a reboot keeps the board silent. */
  constructor(
    private readonly images: Record<string, BoardImage>,
    private readonly downMs = 800,
  ) {
    for (const dir of [this.root, path.join(this.root, 'dev'), path.join(this.root, 'mnt'), this.state]) fs.mkdirSync(dir, { recursive: true, mode: 0o777 });
    fs.writeFileSync(this.ctl, `#!/bin/sh\necho "$*" >> ${this.requests}\n`, { mode: 0o755 });
    for (const file of [this.requests, this.callLog]) fs.writeFileSync(file, '', { mode: 0o666 });
    // Password users' sessions write the logs and the fake root too.
    execFileSync('chmod', ['-R', 'a+rwX', this.dir]);
  }

  /** A command line (for reboot_script and the like) that sends `request` to the board. */
  command(request: string): string {
    return `${this.ctl} ${request}`;
  }

  /** Starts answering requests; boots `image` now, or stays down when it is null. */
  async start(image: string | null): Promise<this> {
    this.port = await freePort();
    this.selected = image ?? undefined;
    if (image) await this.boot(image, false);
    this.timer = setInterval(() => void this.tick(), 100);
    onCleanup(() => this.stop());
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.halt();
    for (const sshd of this.sshds.values()) await sshd.stopAndWait();
  }

  /** Every shim call so far, as "<image>: <program> <args>". */
  calls(): string[] {
    return fs.readFileSync(this.callLog, 'utf8').split('\n').filter(Boolean);
  }

  /** The home of `image`'s current install (where keys copied to it land). */
  home(image: string): string | undefined {
    return this.sshds.get(image)?.deviceHome;
  }

  /** A file of the fake root, e.g. dev/mmcblk1. */
  file(relative: string): string {
    return path.join(this.root, relative);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const lines = fs.readFileSync(this.requests, 'utf8').split('\n').filter(Boolean);
      for (const request of lines.slice(this.handled)) {
        this.handled++;
        await this.play(request);
      }
    } finally {
      this.busy = false;
    }
  }

  private async play(request: string): Promise<void> {
    const [verb, image] = request.split(' ');
    this.events.push(request);
    if (verb === 'select') this.selected = image;
    else if (verb === 'down') await this.halt();
    else if (verb === 'reboot') {
      await this.halt();
      await new Promise((r) => setTimeout(r, this.downMs));
      if (this.selected) await this.boot(this.selected, false);
    } else if (verb === 'reset' && image) {
      await this.halt();
      await new Promise((r) => setTimeout(r, this.downMs));
      await this.boot(image, true);
    }
  }

  private async halt(): Promise<void> {
    if (!this.running) return;
    await this.sshds.get(this.running)?.stopAndWait();
    await this.images[this.running]?.alsoRuns?.stop();
    this.running = undefined;
  }

  /** Boots `name` on the board's port: its earlier sshd again, or a fresh install. An unknown image never boots. */
  private async boot(name: string, fresh: boolean): Promise<void> {
    const image = this.images[name];
    if (!image) return;
    let sshd = this.sshds.get(name);
    if (sshd && !fresh && !image.freshEachBoot) await sshd.restart();
    else {
      await sshd?.stopAndWait();
      sshd = new TestSshd();
      this.sshds.set(name, sshd);
      await sshd.start(image.authorized ?? [], { port: this.port, sessionPath: this.writeShims(name, image), ...(image.passwordLoginUser ? { passwordLoginUser: image.passwordLoginUser } : {}) });
    }
    await image.alsoRuns?.start();
    this.running = name;
    this.events.push(`booted ${name}`);
  }

  private writeShims(name: string, image: BoardImage): string {
    const bin = path.join(this.dir, `bin-${name}`);
    fs.mkdirSync(bin, { recursive: true, mode: 0o755 });
    const prelude = `BOARD_ROOT=${this.root}\nBOARD_STATE=${this.state}\nBOARD_CTL=${this.ctl}\nBOARD_BIN=${bin}\n`;
    for (const [program, body] of Object.entries({ sudo: SUDO, ...image.shims })) {
      const log = `echo "${name}: ${program} $*" >> ${this.callLog}\n`;
      fs.writeFileSync(path.join(bin, program), `#!/bin/bash\n${prelude}${log}${body}\n`, { mode: 0o755 });
    }
    return bin;
  }
}
