/**
 * How many files and processes supervisord needs for the agents it runs, and whether this host
 * can give them. Limits move in steps so adding one agent does not mean a supervisord restart.
 */
import * as fs from 'node:fs';

/** supervisord holds per child three pipe ends and one or two log files; 7 leaves room. */
const FDS_PER_AGENT = 7;
const FDS_BASE = 128;
/** The agent and the shell of its running phase; phase commands' own children are few. */
const PROCS_PER_AGENT = 2;
const STEP = 1024;
/** What one idle agent costs in memory, with room for its phase commands. */
export const AGENT_MEMORY_BUDGET_MB = 64;

export interface SupervisorLimits {
  minfds: number;
  minprocs: number;
}

const roundUp = (n: number, step: number) => Math.ceil(n / step) * step;

export function supervisorLimits(agentCount: number): SupervisorLimits {
  return {
    minfds: Math.max(1024, roundUp(FDS_BASE + agentCount * FDS_PER_AGENT, STEP)),
    minprocs: Math.max(1024, roundUp(64 + agentCount * PROCS_PER_AGENT, STEP)),
  };
}

export interface HostCapacity {
  /** Hard limit of open files for processes started like this one. */
  maxOpenFiles: number;
  memTotalMb: number;
}

export function readHostCapacity(procDir = '/proc'): HostCapacity {
  const limits = fs.readFileSync(`${procDir}/self/limits`, 'utf8');
  const files = /^Max open files\s+\S+\s+(\S+)/m.exec(limits)?.[1];
  const meminfo = fs.readFileSync(`${procDir}/meminfo`, 'utf8');
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  return { maxOpenFiles: files === undefined || files === 'unlimited' ? Number.POSITIVE_INFINITY : Number(files), memTotalMb: Math.floor(memKb / 1024) };
}

/** Why this host cannot run this many agents, or undefined when it can. */
export function capacityProblem(agentCount: number, capacity: HostCapacity): string | undefined {
  const { minfds } = supervisorLimits(agentCount);
  if (minfds > capacity.maxOpenFiles) {
    return `host too small: ${agentCount} agents need ${minfds} open files but the hard limit is ${capacity.maxOpenFiles}`;
  }
  const memoryMb = agentCount * AGENT_MEMORY_BUDGET_MB;
  if (memoryMb > capacity.memTotalMb) {
    return `host too small: ${agentCount} agents need about ${memoryMb} MB of memory; the host has ${capacity.memTotalMb} MB`;
  }
  return undefined;
}
