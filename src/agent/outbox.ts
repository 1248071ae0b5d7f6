/**
 * Results that must reach the server: each finished job is written here first, then sent and
 * removed. What the server cannot take now stays on disk (results_basedir) and is sent before
 * the next job; a final rejection (4xx) still sets the job's final job_state so no one waits.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LogFragment, LogKind, ServerApi } from './api';
import { ServerError } from './client';
import type { Logger } from './logger';
import { ensurePrivateDir, tightenBaseDir, writePrivateFile } from './privatefs';

export interface OutboxEntry {
  jobId: string;
  /** Posted to /v1/result/<id>: status map, job_state, device_info. */
  result: Record<string, unknown>;
  fragments: Partial<Record<LogKind, LogFragment[]>>;
  artifact?: Buffer;
}

const RESULT_FILE = 'result.json';
const ARTIFACT_FILE = 'artifacts.tar.gz';
const fragmentFile = (kind: LogKind) => `unsent-${kind}.json`;

export class Outbox {
  constructor(
    private readonly dir: string,
    private readonly api: ServerApi,
    private readonly log: Logger,
  ) {}

  /** Writes the entry to disk (atomically, as a directory rename) before anything is sent. */
  store(entry: OutboxEntry): string {
    const target = path.join(this.dir, entry.jobId);
    const staging = `${target}.partial`;
    fs.rmSync(staging, { recursive: true, force: true });
    // Output and artifacts may hold what the job printed: for the agent's user only.
    const loose = tightenBaseDir(this.dir);
    if (loose) this.log.warning(`results_basedir ${loose}`);
    ensurePrivateDir(staging);
    writePrivateFile(path.join(staging, RESULT_FILE), JSON.stringify(entry.result));
    for (const [kind, fragments] of Object.entries(entry.fragments)) {
      if (fragments && fragments.length > 0) writePrivateFile(path.join(staging, fragmentFile(kind as LogKind)), JSON.stringify(fragments));
    }
    if (entry.artifact) writePrivateFile(path.join(staging, ARTIFACT_FILE), entry.artifact);
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(staging, target);
    return target;
  }

  pendingJobs(): string[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs.readdirSync(this.dir).filter((name) => !name.endsWith('.partial') && fs.existsSync(path.join(this.dir, name, RESULT_FILE)));
  }

  /** Sends every stored entry it can; returns the job ids still waiting. */
  async flush(): Promise<string[]> {
    const waiting: string[] = [];
    for (const jobId of this.pendingJobs()) {
      if (!(await this.send(jobId))) waiting.push(jobId);
    }
    return waiting;
  }

  private async send(jobId: string): Promise<boolean> {
    const dir = path.join(this.dir, jobId);
    try {
      await this.sendFragments(jobId, dir);
      const result = JSON.parse(fs.readFileSync(path.join(dir, RESULT_FILE), 'utf8')) as Record<string, unknown>;
      await this.sendResult(jobId, result);
      const artifact = path.join(dir, ARTIFACT_FILE);
      if (fs.existsSync(artifact)) await this.sendArtifact(jobId, fs.readFileSync(artifact));
      fs.rmSync(dir, { recursive: true, force: true });
      this.log.info(`results of job ${jobId} sent`);
      return true;
    } catch (error) {
      this.log.warning(`results of job ${jobId} kept in ${dir} for later: ${(error as Error).message}`);
      return false;
    }
  }

  private async sendFragments(jobId: string, dir: string): Promise<void> {
    for (const kind of ['output', 'serial'] as LogKind[]) {
      const file = path.join(dir, fragmentFile(kind));
      if (!fs.existsSync(file)) continue;
      const fragments = JSON.parse(fs.readFileSync(file, 'utf8')) as LogFragment[];
      while (fragments.length > 0) {
        await this.api.postLog(jobId, kind, fragments[0] as LogFragment);
        fragments.shift();
        writePrivateFile(file, JSON.stringify(fragments));
      }
      fs.rmSync(file);
    }
  }

  private async sendResult(jobId: string, result: Record<string, unknown>): Promise<void> {
    try {
      await this.api.postResult(jobId, result);
    } catch (error) {
      if (!(error instanceof ServerError) || error.retryable) throw error;
      // The server refuses this outcome for good; still end the job so users are not left waiting.
      this.log.error(`server refused the outcome of job ${jobId} (${error.message}); posting its final job_state alone`);
      try {
        await this.api.postResult(jobId, { job_state: result['job_state'] ?? 'complete' });
      } catch (again) {
        if (!(again instanceof ServerError) || again.retryable) throw again;
        this.log.error(`server refused the final job_state of job ${jobId} too (${again.message}); dropping its results`);
      }
    }
  }

  private async sendArtifact(jobId: string, tarball: Buffer): Promise<void> {
    try {
      await this.api.uploadArtifact(jobId, tarball);
    } catch (error) {
      if (!(error instanceof ServerError) || error.retryable) throw error;
      this.log.error(`server refused the artifacts of job ${jobId}: ${error.message}`);
    }
  }
}
