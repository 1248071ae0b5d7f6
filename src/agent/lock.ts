/**
 * One process per agent_id, enforced by the kernel: the agent binds an abstract-namespace unix
 * socket named after its agent_id. Only one process can hold a name, and the kernel frees it
 * when that process dies however it dies (kill -9 included), so there is no stale lock to guess
 * about. Node has no flock(2); this is the lock it does have.
 *
 * The name is keyed by a scope as well as the agent_id, so that separate installations on one
 * machine (parallel test runs, sandboxes) do not block each other: TESTFLINGER_AGENT_LOCK_SCOPE
 * when the environment sets it (e.g. "/" for host-wide), otherwise the real path of the agent's
 * logging_basedir, where its pid file and logs live.
 *
 * The holder answers a connection with its pid; a start that finds the name taken uses it to
 * name the running process in its refusal, or to stop an orphan of a crashed supervisord that
 * runs the same conf before taking over. The pid file is written for operators only.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { sha256Hex } from './sha256';

export class AgentLockError extends Error {
  override readonly name = 'AgentLockError';
}

const ORPHAN_STOP_WAIT_MS = 10_000;
const HOLDER_ANSWER_WAIT_MS = 2000;
const ACQUIRE_ATTEMPTS = 3;
export const LOCK_SCOPE_ENV = 'TESTFLINGER_AGENT_LOCK_SCOPE';

export interface AgentLockOptions {
  agentId: string;
  /** What separates installations; see the header. */
  scope: string;
  confPath: string;
  /** Informational: holds the pid of the process that has the lock. */
  pidFile: string;
  log: (message: string) => void;
}

/** The scope used when the environment does not set one: the real logging_basedir. */
export function defaultLockScope(loggingBasedir: string): string {
  fs.mkdirSync(loggingBasedir, { recursive: true });
  return fs.realpathSync(loggingBasedir);
}

/** An abstract socket name (leading NUL): no file, nothing left behind. */
export function lockSocketName(agentId: string, scope: string): string {
  const digest = sha256Hex(`${scope}\0${agentId}`).slice(0, 40);
  return `\0testflinger-agent/${digest}`;
}

function processInfo(pid: number): { alive: boolean; cmdline: string; ppid: number } {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie has exited; only its parent's wait() is missing.
    return { alive: state !== 'Z', cmdline, ppid: Number(ppid) };
  } catch {
    return { alive: false, cmdline: '', ppid: 0 };
  }
}

function isOurAgent(cmdline: string, confPath: string): boolean {
  return /testflinger-agent/.test(cmdline) && cmdline.includes(confPath);
}

/**
 * A process left behind by a supervisord that died: re-parented to init (or systemd as a
 * subreaper). A live supervisord parent means it is managed: not an orphan.
 */
function isOrphan(ppid: number): boolean {
  if (ppid === 1) return true;
  const parent = processInfo(ppid);
  if (!parent.alive) return true;
  return readComm(ppid) === 'systemd' && !/supervisord/.test(parent.cmdline);
}

function readComm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

async function stopProcess(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + ORPHAN_STOP_WAIT_MS;
  while (Date.now() < deadline && processInfo(pid).alive) await new Promise((r) => setTimeout(r, 100));
  if (processInfo(pid).alive) process.kill(pid, 'SIGKILL');
}

/** Binds the name; resolves to the server, or to undefined when another process holds it. */
function bind(name: string): Promise<net.Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.end(`${process.pid}\n`));
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(undefined) : reject(error)));
    server.listen({ path: name }, () => {
      // The lock must not keep the process alive on its own.
      server.unref();
      resolve(server);
    });
  });
}

/** The pid the holder of the name answers with, or undefined when it does not answer. */
function askHolder(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect({ path: name });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const pid = Number(answer.trim());
      resolve(Number.isSafeInteger(pid) && pid > 0 ? pid : undefined);
    };
    const timer = setTimeout(done, HOLDER_ANSWER_WAIT_MS);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      if (answer.length < 32) answer += chunk;
    });
    socket.on('end', done);
    socket.on('error', done);
  });
}

function writePidFile(pidFile: string): () => void {
  try {
    fs.mkdirSync(path.dirname(pidFile), { recursive: true });
    fs.writeFileSync(pidFile, `${process.pid}\n`);
  } catch {
    // Informational only: the socket is the lock.
  }
  return () => {
    try {
      if (fs.readFileSync(pidFile, 'utf8').trim() === String(process.pid)) fs.rmSync(pidFile);
    } catch {
      // already gone
    }
  };
}

/** Takes the agent's lock or throws AgentLockError naming the agent_id and the holder. */
export async function acquireAgentLock(options: AgentLockOptions): Promise<() => void> {
  const name = lockSocketName(options.agentId, options.scope);
  for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
    const server = await bind(name);
    if (server) {
      const removePidFile = writePidFile(options.pidFile);
      return () => {
        removePidFile();
        server.close();
      };
    }
    const holder = await askHolder(name);
    const info = holder === undefined ? undefined : processInfo(holder);
    if (holder !== undefined && info?.alive && isOurAgent(info.cmdline, options.confPath) && isOrphan(info.ppid)) {
      options.log(`stopping orphaned agent process ${holder} for ${JSON.stringify(options.confPath)} (its supervisor is gone)`);
      await stopProcess(holder);
      continue;
    }
    // The holder may have exited between bind and ask: try again.
    if (holder !== undefined && info && !info.alive) continue;
    const who = holder === undefined ? 'a process that does not answer' : `pid ${holder}${info?.cmdline ? `: ${JSON.stringify(info.cmdline.trim())}` : ''}`;
    throw new AgentLockError(`agent_id ${JSON.stringify(options.agentId)} is already run by another testflinger-agent (${who}); refusing to start a second one`);
  }
  throw new AgentLockError(`could not take the lock of agent_id ${JSON.stringify(options.agentId)}`);
}
