/**
 * One process per agent. A pid file under logging_basedir is created exclusively; a second
 * start finds it and either takes over from a stale owner (dead, or an orphan of a crashed
 * supervisord running the same conf) or refuses with a message naming the running process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class AgentLockError extends Error {
  override readonly name = 'AgentLockError';
}

const ORPHAN_STOP_WAIT_MS = 10_000;

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
 * A process left behind by a supervisord that died: re-parented to init, or to a subreaper
 * that is not a supervisord. A live supervisord parent means it is managed: not stale.
 */
function isOrphan(ppid: number): boolean {
  if (ppid === 1) return true;
  const parent = processInfo(ppid);
  if (!parent.alive) return true;
  return isSubreaper(ppid) && !/supervisord/.test(parent.cmdline);
}

function isSubreaper(pid: number): boolean {
  try {
    // /proc/<pid>/status has no subreaper flag; a process adopting orphans shows them as children
    // without being their launcher. The reliable, portable signal we have is init's pid.
    return pid === 1 || fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'systemd';
  } catch {
    return false;
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

export async function acquireAgentLock(
  pidFile: string,
  confPath: string,
  log: (message: string) => void,
): Promise<() => void> {
  fs.mkdirSync(path.dirname(pidFile), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(pidFile, `${process.pid}\n`, { flag: 'wx' });
      return () => {
        try {
          if (fs.readFileSync(pidFile, 'utf8').trim() === String(process.pid)) fs.rmSync(pidFile);
        } catch {
          // already gone
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number(fs.readFileSync(pidFile, 'utf8').trim());
    const info = Number.isInteger(holder) && holder > 0 && holder !== process.pid ? processInfo(holder) : { alive: false, cmdline: '', ppid: 0 };
    if (info.alive && isOurAgent(info.cmdline, confPath)) {
      if (!isOrphan(info.ppid)) {
        throw new AgentLockError(`another testflinger-agent (pid ${holder}) already runs ${confPath}; refusing to start a second one`);
      }
      log(`stopping orphaned agent process ${holder} for ${confPath} (its supervisor is gone)`);
      await stopProcess(holder);
    }
    fs.rmSync(pidFile, { force: true });
  }
  throw new AgentLockError(`could not take the lock ${pidFile}`);
}
