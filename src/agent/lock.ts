/**
 * One process per agent_id: the agent holds a unix socket in a directory only its own user can
 * write. The holder answers a connection with its pid; a socket nobody listens on any more (the
 * holder was killed with -9) refuses connections, and is removed by the next start.
 *
 * Why a path and not an abstract name: abstract names live in the network namespace, which the
 * test phase shares with the host (jobs reach their devices), so any local process could bind
 * another agent's name first and keep that agent from starting. A path in the agent's own 0700
 * directory can be made by its user alone.
 *
 * The directory: the agent's state directory when the charm gives one (STATE_DIR_ENV in the contract:
 * one per agent directory of the config repo, whatever its conf's basedirs say), else
 * TESTFLINGER_AGENT_LOCK_SCOPE (a directory that separates installations on one machine:
 * parallel test runs, sandboxes), else the agent's logging_basedir, where its pid file and logs
 * live. A directory another user owns or may write is refused: that user could hold the lock.
 *
 * Taking it is race-free between two starts: each binds its socket, under a name of its own, in
 * a staging directory, then renames that directory to the lock's name; rename(2) onto a
 * non-empty directory fails, so one start wins. A stale socket is removed by its own unique
 * name, and the emptied lock directory with rmdir(2), which fails once a new holder moved in: a
 * start never removes a live holder's socket. Every path goes through /proc/self/fd/<dir fd>,
 * so a socket's address stays within sun_path's 107 bytes however long the directory's path.
 *
 * A start that finds the lock held names the holder in its refusal, or stops an orphan of a
 * crashed supervisord that runs the same conf before taking over. The pid file is written for
 * operators only.
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
/** An orphan stopped, a stale socket removed, a holder gone meanwhile: each costs one attempt. */
const ACQUIRE_ATTEMPTS = 5;
/** Only a holder's socket is ever in the lock's directory; more entries are not looked at. */
const MAX_LOCK_ENTRIES = 4;

export interface AgentLockOptions {
  agentId: string;
  /** Where the lock lives: a directory of the agent's user alone; see the header. */
  directory: string;
  confPath: string;
  /** Informational: holds the pid of the process that has the lock. */
  pidFile: string;
  log: (message: string) => void;
}

/** The lock's directory: the agent's state directory, else the scope, else its logging_basedir (see the header). */
export function lockDirectory(stateDir: string | undefined, scope: string | undefined, loggingBasedir: string): string {
  return stateDir || scope || loggingBasedir;
}

/** The lock's name in its directory: hidden, per agent_id, the same digest across versions. */
export function lockName(agentId: string): string {
  return `.testflinger-agent-lock-${sha256Hex(agentId).slice(0, 16)}`;
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

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Runs `step`, treating the listed error codes as "already so". */
function tolerating(codes: readonly string[], step: () => void): void {
  try {
    step();
  } catch (error) {
    if (!codes.includes(errorCode(error) ?? '')) throw error;
  }
}

/**
 * The lock's directory, opened: its descriptor anchors every path below. Refused when another
 * user owns it or may write in it, since that user could then hold the lock.
 */
function openLockDirectory(directory: string): number {
  fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
  const fd = fs.openSync(directory, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const stat = fs.fstatSync(fd);
  const uid = process.geteuid?.() ?? 0;
  const problem = stat.uid !== uid ? `is owned by uid ${stat.uid}, not by this agent's user (uid ${uid})` : stat.mode & 0o022 ? `may be written by other users (mode ${(stat.mode & 0o7777).toString(8)})` : undefined;
  if (problem === undefined) return fd;
  fs.closeSync(fd);
  throw new AgentLockError(`the lock directory ${JSON.stringify(directory)} ${problem}: another user could hold this agent's lock; make it the agent user's, 0700`);
}

/** Listens on `address`; the lock must not keep the process alive on its own. */
function listen(address: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    // A caller that hangs up before the answer is sent must not take the agent down with it.
    const server = net.createServer((socket) => socket.on('error', () => undefined).end(`${process.pid}\n`));
    server.once('error', reject);
    server.listen({ path: address }, () => {
      server.unref();
      resolve(server);
    });
  });
}

type Probe = { live: true; pid: number | undefined } | { live: false; gone: boolean };

/**
 * What is at `address`: a live holder (with the pid it answers, if it answers in time), a socket
 * nobody listens on (stale: refused; a non-socket is refused too), or nothing any more.
 */
function probeHolder(address: string): Promise<Probe> {
  return new Promise((resolve) => {
    let answer = '';
    let connected = false;
    const socket = net.connect({ path: address });
    const done = (error?: unknown) => {
      clearTimeout(timer);
      socket.destroy();
      if (connected || !['ECONNREFUSED', 'ENOENT'].includes(errorCode(error) ?? '')) {
        const pid = Number(answer.trim());
        resolve({ live: true, pid: Number.isSafeInteger(pid) && pid > 0 ? pid : undefined });
      } else resolve({ live: false, gone: errorCode(error) === 'ENOENT' });
    };
    const timer = setTimeout(done, HOLDER_ANSWER_WAIT_MS);
    socket.setEncoding('utf8');
    socket.on('connect', () => (connected = true));
    socket.on('data', (chunk: string) => {
      if (answer.length < 32) answer += chunk;
    });
    socket.on('end', () => done());
    socket.on('error', done);
  });
}

/** The lock as this process holds it: its socket, by a name no other start uses. */
interface HeldLock {
  server: net.Server;
  socketName: string;
}

/**
 * Binds a socket in a staging directory of this start's own and renames that directory to the
 * lock's name: fails (undefined) when a holder's directory, live or stale, is there.
 */
async function claim(base: string, name: string): Promise<HeldLock | undefined> {
  // Short: `/proc/self/fd/<fd>/<name>.<id>/<id>` stays near 95 bytes, within sun_path's 107.
  const socketName = `${process.pid.toString(36)}-${process.hrtime.bigint().toString(36)}`;
  const staging = `${base}/${name}.${socketName}`;
  fs.mkdirSync(staging, { mode: 0o700 });
  let server: net.Server | undefined;
  try {
    server = await listen(`${staging}/${socketName}`);
    fs.renameSync(staging, `${base}/${name}`);
    return { server, socketName };
  } catch (error) {
    // A directory (ENOTEMPTY, EEXIST) or anything else (ENOTDIR) at the name: not ours to take yet.
    if (!['ENOTEMPTY', 'EEXIST', 'ENOTDIR'].includes(errorCode(error) ?? '')) throw error;
    return undefined;
  } finally {
    if (fs.existsSync(staging)) {
      // Closing a listening unix socket unlinks its file (libuv); only the empty directory is left.
      await new Promise((r) => (server ? server.close(r) : r(undefined)));
      tolerating(['ENOENT'], () => fs.rmSync(`${staging}/${socketName}`));
      tolerating(['ENOENT'], () => fs.rmdirSync(staging));
    }
  }
}

/**
 * Looks at what holds the lock's name: a live holder's pid (undefined: it does not answer), or
 * 'retry' once stale sockets are removed, by their own names, and the emptied directory with it.
 */
async function inspectHolder(base: string, name: string): Promise<{ pid: number | undefined } | 'retry'> {
  const lock = `${base}/${name}`;
  let entries: string[];
  try {
    entries = fs.readdirSync(lock);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return 'retry';
    if (errorCode(error) !== 'ENOTDIR') throw error;
    // Not a directory: nothing of ours, in a directory only our user writes. Unlink, never follow.
    tolerating(['ENOENT'], () => fs.unlinkSync(lock));
    return 'retry';
  }
  for (const entry of entries.slice(0, MAX_LOCK_ENTRIES)) {
    const probe = await probeHolder(`${lock}/${entry}`);
    if (probe.live) return { pid: probe.pid };
    if (!probe.gone) tolerating(['ENOENT'], () => fs.rmSync(`${lock}/${entry}`, { recursive: true }));
  }
  // Fails once a new holder renamed its directory here: then the next attempt finds it live.
  tolerating(['ENOENT', 'ENOTEMPTY', 'EEXIST'], () => fs.rmdirSync(lock));
  return 'retry';
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

/** Gives the lock up: this holder's socket by its own name, then the directory if still empty. */
function releaser(dirFd: number, base: string, name: string, held: HeldLock): () => void {
  return () => {
    tolerating(['ENOENT'], () => fs.unlinkSync(`${base}/${name}/${held.socketName}`));
    tolerating(['ENOENT', 'ENOTEMPTY', 'EEXIST'], () => fs.rmdirSync(`${base}/${name}`));
    held.server.close();
    fs.closeSync(dirFd);
  };
}

/** Takes the agent's lock or throws AgentLockError naming the agent_id and the holder. */
export async function acquireAgentLock(options: AgentLockOptions): Promise<() => void> {
  const dirFd = openLockDirectory(options.directory);
  const base = `/proc/self/fd/${dirFd}`;
  const name = lockName(options.agentId);
  try {
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const held = await claim(base, name);
      if (held) {
        const removePidFile = writePidFile(options.pidFile);
        const release = releaser(dirFd, base, name, held);
        return () => {
          removePidFile();
          release();
        };
      }
      const holder = await inspectHolder(base, name);
      if (holder === 'retry') continue;
      const info = holder.pid === undefined ? undefined : processInfo(holder.pid);
      if (holder.pid !== undefined && info?.alive && isOurAgent(info.cmdline, options.confPath) && isOrphan(info.ppid)) {
        options.log(`stopping orphaned agent process ${holder.pid} for ${JSON.stringify(options.confPath)} (its supervisor is gone)`);
        await stopProcess(holder.pid);
        continue;
      }
      // The holder may have exited between claim and ask: try again.
      if (holder.pid !== undefined && info && !info.alive) continue;
      const who = holder.pid === undefined ? 'a process that does not answer' : `pid ${holder.pid}${info?.cmdline ? `: ${JSON.stringify(info.cmdline.trim())}` : ''}`;
      throw new AgentLockError(`agent_id ${JSON.stringify(options.agentId)} is already run by another testflinger-agent (${who}); refusing to start a second one`);
    }
    throw new AgentLockError(`could not take the lock of agent_id ${JSON.stringify(options.agentId)}`);
  } catch (error) {
    fs.closeSync(dirFd);
    throw error;
  }
}
