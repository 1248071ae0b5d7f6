/**
 * The directories a unit has before the charm runs, laid out in a sandbox root
 * (AGENT_HOST_ROOT) so that the charm finds the same host in both modes (docs/architecture.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Directories every unit has before the charm runs, which the charm writes into without making
 * them (an offline marker goes straight into /tmp): a sandbox root has them too, with a unit's modes.
 */
const UNIT_DIRECTORIES: ReadonlyArray<readonly [string, number]> = [
  ['tmp', 0o1777],
  ['var/tmp', 0o1777],
  ['home/ubuntu', 0o755],
  ['usr/local/bin', 0o755],
  ['var/lib', 0o755],
  ['var/log', 0o755],
];

/** Makes the directories a unit always has under `root` (those there already are left as they are). */
export function layOutUnitDirectories(root: string): void {
  for (const [dir, mode] of UNIT_DIRECTORIES) {
    const full = path.join(root, dir);
    if (fs.existsSync(full)) continue;
    fs.mkdirSync(full, { recursive: true });
    // chmod, not mkdir's mode: the umask would take the sticky and world bits away.
    fs.chmodSync(full, mode);
  }
}
