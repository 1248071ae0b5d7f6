/**
 * <phase>.log in the run directory, as upstream writes it. Each is opened once per phase, so a
 * link or FIFO the job puts at the name later is never written through; the live log, not this
 * file, is the record the server gets.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openRunDirLog, RunDirFileRefused } from './privatefs';

export class PhaseLogFiles {
  /** Each phase's open log; null when the job made it unusable. */
  private readonly fds = new Map<string, number | null>();

  /** `refused` says, in the phase's output, why a log was not written. */
  constructor(
    private readonly runDir: string,
    private readonly refused: (phase: string, note: string) => void,
  ) {}

  append(phase: string, text: string): void {
    if (!this.fds.has(phase)) this.fds.set(phase, this.open(phase));
    const fd = this.fds.get(phase);
    if (fd === null || fd === undefined) return;
    try {
      fs.writeSync(fd, text);
    } catch {
      // A full disk: the live log still carries the output.
    }
  }

  close(phase: string): void {
    const fd = this.fds.get(phase);
    this.fds.delete(phase);
    if (fd !== null && fd !== undefined) fs.closeSync(fd);
  }

  closeAll(): void {
    for (const phase of [...this.fds.keys()]) this.close(phase);
  }

  private open(phase: string): number | null {
    try {
      return openRunDirLog(path.join(this.runDir, `${phase}.log`));
    } catch (error) {
      // Unmasked on purpose: the note holds a path and a reason, never the job's output.
      if (error instanceof RunDirFileRefused) this.refused(phase, `WARNING: ${phase}.log not written: ${error.message}\n`);
      return null; // or the job removed its run directory
    }
  }
}
