/**
 * Live output: text is cut into numbered fragments and posted as it arrives, at most one post
 * in flight and a few a second. Fragments the server did not take are kept (bounded) and sent
 * in order later, so a server that is away loses no output.
 */
import type { LogFragment, LogKind, ServerApi } from './api';
import type { Clock } from './clock';

export interface LiveLogOptions {
  /** Minimum time between posts; output arriving meanwhile goes into the next fragment. */
  intervalMs: number;
  maxFragmentBytes: number;
  /** Oldest unsent fragments are dropped past this (they remain in <phase>.log). */
  maxPendingBytes: number;
}

export const DEFAULT_LIVE_LOG: LiveLogOptions = { intervalMs: 250, maxFragmentBytes: 64 * 1024, maxPendingBytes: 16 * 1024 * 1024 };

export class LiveLog {
  private pending: LogFragment[] = [];
  private pendingBytes = 0;
  private nextNumber = 0;
  private current: { phase: string; text: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private lastPostAt = 0;
  dropped = 0;
  /** Fragments cut and waiting to be sent. */
  get queued(): number {
    return this.pending.length;
  }

  constructor(
    private readonly api: ServerApi,
    private readonly jobId: string,
    private readonly kind: LogKind,
    private readonly clock: Clock,
    private readonly options: LiveLogOptions = DEFAULT_LIVE_LOG,
    /** Numbering goes on from here (a job resumed by a new agent process); told of each new number. */
    numbering: { first: number; onNext?: (next: number) => void } = { first: 0 },
    /** Told of each fragment as it is cut, before it is sent (MQTT's live log). */
    private readonly onFragment?: (fragment: LogFragment) => void,
  ) {
    this.nextNumber = numbering.first;
    this.onNext = numbering.onNext;
  }
  private readonly onNext: ((next: number) => void) | undefined;

  write(phase: string, text: string): void {
    if (text === '') return;
    if (this.current && (this.current.phase !== phase || this.current.text.length >= this.options.maxFragmentBytes)) this.cut();
    this.current = { phase, text: (this.current?.text ?? '') + text };
    this.schedule();
  }

  private cut(): void {
    if (!this.current) return;
    this.onNext?.(this.nextNumber + 1);
    const fragment = { fragment_number: this.nextNumber++, timestamp: new Date(this.clock.now()).toISOString(), phase: this.current.phase, log_data: this.current.text };
    this.enqueue(fragment);
    this.onFragment?.(fragment);
    this.current = undefined;
  }

  private enqueue(fragment: LogFragment): void {
    this.pending.push(fragment);
    this.pendingBytes += fragment.log_data.length;
    while (this.pendingBytes > this.options.maxPendingBytes && this.pending.length > 1) {
      const old = this.pending.shift() as LogFragment;
      this.pendingBytes -= old.log_data.length;
      this.dropped++;
    }
  }

  private schedule(): void {
    if (this.timer || this.inFlight) return;
    const wait = Math.max(0, this.lastPostAt + this.options.intervalMs - this.clock.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, wait);
  }

  /** Sends what is pending, in order; stops at the first failure and keeps the rest. */
  flush(): Promise<void> {
    if (this.inFlight) return this.inFlight.then(() => this.flush());
    this.cut();
    this.inFlight = this.sendPending().finally(() => {
      this.inFlight = undefined;
      if (this.current) this.schedule();
    });
    return this.inFlight;
  }

  private async sendPending(): Promise<void> {
    while (this.pending.length > 0) {
      const fragment = this.pending[0] as LogFragment;
      this.lastPostAt = this.clock.now();
      try {
        await this.api.postLog(this.jobId, this.kind, fragment);
      } catch {
        return;
      }
      this.pending.shift();
      this.pendingBytes -= fragment.log_data.length;
    }
  }

  /** Final flush; returns the fragments the server never took. */
  async close(): Promise<LogFragment[]> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    return [...this.pending];
  }
}
