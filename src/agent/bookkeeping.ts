/**
 * A job's files: its run directory (where its commands run, and may change anything) and the
 * agent's own bookkeeping beside it, `.<job_id>.agent`, out of reach of `mv *` inside the run
 * directory: the job as received and how far it got, which is what survives the agent being
 * killed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jobSchema, type Job } from './api';
import { packArtifacts } from './attachments';
import { DEVICE_INFO_FILE, JOB_FILE } from '../common/contract';
import { readFileNoFollow } from '../common/fsutil';
import type { AgentConfig } from './config';
import type { Logger } from './logger';
import { ensurePrivateDir, tightenBaseDir, writePrivateFile, writeRunDirFile } from './privatefs';
import type { ScopeRecord } from './containment';

/** device-info.json is a few addresses and names; anything bigger is not the connector's. */
const DEVICE_INFO_MAX_BYTES = 1024 * 1024;
const BOOKKEEPING_DIR = /^\.(.+)\.agent$/;

/** What survives the agent being killed: which phase ran, and its process group to end. */
export type Progress = {
  status: Record<string, number>;
  phase: string | null;
  startedAt: number;
  phasePid?: number;
  /** The running phase's containment (its cgroup), to end what it left after a crash. */
  phaseScope?: ScopeRecord;
  /** Next live-log fragment numbers, so a resumed job does not reuse a number. */
  nextFragment?: { output: number; serial: number };
};

export function runDirOf(config: AgentConfig, jobId: string): string {
  return path.join(config.execution_basedir, jobId);
}
/** Beside the run directory, out of reach of `mv *` inside it. */
export function bookkeepingDirOf(config: AgentConfig, jobId: string): string {
  return path.join(config.execution_basedir, `.${jobId}.agent`);
}

export class JobFiles {
  readonly runDir: string;
  readonly keepDir: string;

  constructor(private readonly config: AgentConfig, jobId: string) {
    this.runDir = runDirOf(config, jobId);
    this.keepDir = bookkeepingDirOf(config, jobId);
  }

  /** The job's files hold its secrets: every folder on the way is 0700 and every file 0600. */
  prepare(job: Job, log: Logger): void {
    const loose = tightenBaseDir(this.config.execution_basedir);
    if (loose) log.warning(`execution_basedir ${loose}`);
    ensurePrivateDir(this.runDir);
    ensurePrivateDir(this.keepDir);
    const jobText = JSON.stringify(job, null, 2);
    writeRunDirFile(path.join(this.runDir, JOB_FILE), jobText);
    writePrivateFile(path.join(this.keepDir, 'job.json'), jobText);
  }

  /** The job may have removed its run directory in an earlier phase; later phases get a new one. */
  ensureRunDir(): void {
    ensurePrivateDir(this.runDir);
  }

  saveProgress(progress: Progress): void {
    writePrivateFile(path.join(this.keepDir, 'progress.json'), JSON.stringify(progress));
    // Upstream's copy, for the job's commands to read; ours (above) is the one the agent trusts.
    // Rewritten from ours each time, never through what the job left at its name.
    try {
      writeRunDirFile(path.join(this.runDir, 'testflinger-outcome.json'), JSON.stringify({ status: progress.status }));
    } catch {
      // The job removed its run directory, or put a link, FIFO or folder at the name.
    }
  }

  /** Where attachments are downloaded: beside the run directory, not in the job's reach. */
  get attachmentsArchive(): string {
    return path.join(this.keepDir, 'attachments.tar.gz');
  }

  /** Written by the connector, in reach of the job: a regular file only, bounded, never a link or FIFO. */
  readDeviceInfo(): unknown {
    try {
      const text = readFileNoFollow(path.join(this.runDir, DEVICE_INFO_FILE), DEVICE_INFO_MAX_BYTES).toString('utf8');
      return (JSON.parse(text) as { device_info?: unknown }).device_info;
    } catch {
      return undefined; // none, or not a plain bounded file of JSON
    }
  }

  /** The run's artifacts/ as a tar.gz, if the run directory still has one. */
  async packArtifact(): Promise<Buffer | undefined> {
    return fs.existsSync(this.runDir) ? packArtifacts(this.runDir).catch(() => undefined) : undefined;
  }

  /** Once the outcome is stored: the job's files are not needed any more. */
  remove(): void {
    fs.rmSync(this.runDir, { recursive: true, force: true });
    fs.rmSync(this.keepDir, { recursive: true, force: true });
  }
}

/** A job a previous agent process left mid-way, as its bookkeeping recorded it. */
export interface InterruptedJob {
  job: Job;
  progress: Progress;
}

/** The jobs left in execution_basedir by a process that died; bookkeeping that cannot be read is removed. */
export function interruptedJobs(executionBasedir: string): InterruptedJob[] {
  if (!fs.existsSync(executionBasedir)) return [];
  const found: InterruptedJob[] = [];
  for (const name of fs.readdirSync(executionBasedir)) {
    if (!BOOKKEEPING_DIR.test(name)) continue;
    const keepDir = path.join(executionBasedir, name);
    try {
      const job = jobSchema.parse(JSON.parse(fs.readFileSync(path.join(keepDir, 'job.json'), 'utf8')));
      const progress = JSON.parse(fs.readFileSync(path.join(keepDir, 'progress.json'), 'utf8')) as Progress;
      found.push({ job, progress });
    } catch {
      fs.rmSync(keepDir, { recursive: true, force: true });
    }
  }
  return found;
}
