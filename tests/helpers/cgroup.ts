/** Cgroups a test made beside its own process (the agent wrapper makes one per agent under its caller's). */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** This process's cgroup v2 directory, or undefined where there is none. */
export function ownCgroupDir(): string | undefined {
  const mount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => / - cgroup2 /.test(l))?.split(' ')[4];
  const own = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'))?.slice(3);
  return mount && own !== undefined ? path.join(mount, own) : undefined;
}

/** Removes `<this process's cgroup v2>/<name>` once empty; nothing where there is none. */
export function removeChildCgroup(name: string): void {
  const own = ownCgroupDir();
  if (!own) return;
  try {
    fs.rmdirSync(path.join(own, name));
  } catch {
    // not made (no cgroup v2 here) or already gone
  }
}
