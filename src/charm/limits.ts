/**
 * How many files and processes supervisord needs for the agents it runs, and whether this host
 * can give them. Limits move in steps so adding one agent does not mean a supervisord restart.
 */
import * as fs from 'node:fs';
import { MAX_MEMORY_ENV, MAX_PROCESSES_ENV } from '../common/contract';
import type { CharmConfig } from './config';
import type { AgentRun } from './driver';

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

// ---- what one agent may use (the charm's agent-max-processes and agent-max-memory) ----

/** Processes (tasks: threads count) one agent's user may have, its agent included. */
export const MAX_PROCESSES_RANGE = { min: 64, max: 4_194_304 } as const;
/** Below this the agent itself (node, ~100 MB) and a phase's ssh and connector do not fit. */
const MIN_AGENT_MEMORY = 256 * 1024 ** 2;
const MAX_AGENT_MEMORY = 1024 ** 5;
const UNITS: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * `agent-max-memory`: a size with an optional binary unit (`512M`, `4G`, `4294967296`), or `max`
 * (no limit: cgroup v2's own word). Returns bytes, or undefined for `max`; throws with the reason.
 */
export function parseMemorySize(text: string): number | undefined {
  if (text === 'max') return undefined;
  const m = /^([1-9][0-9]{0,15})([KMGT]?)$/.exec(text);
  if (!m) throw new Error('must be a size such as 4G, 512M or 4294967296 (bytes), or max for no limit');
  const bytes = Number(m[1]) * (UNITS[m[2] as string] as number);
  if (bytes < MIN_AGENT_MEMORY) throw new Error('must be at least 256M (the agent itself needs about 100M)');
  if (bytes > MAX_AGENT_MEMORY) throw new Error('must be at most 1024T');
  return bytes;
}

/**
 * The agent's run with its limits in its environment: the unit's wrapper (root) sets them on the
 * agent and its cgroup before it drops to the agent's user; a sandbox root's agent sets them on
 * each phase (src/agent/containment.ts).
 */
export function withAgentLimits(run: AgentRun, config: CharmConfig): AgentRun {
  const memory = config['agent-max-memory'];
  const limits = { [MAX_PROCESSES_ENV]: String(config['agent-max-processes']), ...(memory === null ? {} : { [MAX_MEMORY_ENV]: String(memory) }) };
  return { ...run, env: { ...run.env, ...limits } };
}
