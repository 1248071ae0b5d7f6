/**
 * Each agent's files on a unit (docs/isolation.md, "One system user per agent"): a root-owned
 * home holding a root-owned `~/.ssh` with the lab key (root, group testflinger-agents, 0640), its
 * public half, and an ssh config owned by the agent's user (ssh, in the sandbox's user namespace,
 * refuses a config owned by anyone but the user or root); and the agent's state directory, its
 * user's alone. Every directory root writes in is root's, so nothing an agent's user plants can
 * make root write elsewhere; files go in through O_EXCL|O_NOFOLLOW temp files (writeFileAtomic).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../common/fsutil';
import type { FileOwner } from '../common/privileges';
import type { CharmConfig } from './config';
import type { HostPaths } from './paths';
import type { SshFileSpec } from './ssh';

export class AgentFilesError extends Error {
  override readonly name = 'AgentFilesError';
}

const ROOT: FileOwner = { uid: 0, gid: 0 };

/** A directory with this owner and mode; one that is a link or a file is refused, never followed. */
function ensureDir(dir: string, owner: FileOwner, mode: number): void {
  fs.mkdirSync(dir, { recursive: true, mode });
  const stat = fs.lstatSync(dir);
  if (!stat.isDirectory()) throw new AgentFilesError(`agent files: ${dir} is not a directory (a link?)`);
  if (stat.uid !== owner.uid || stat.gid !== owner.gid) fs.lchownSync(dir, owner.uid, owner.gid);
  if ((stat.mode & 0o7777) !== mode) fs.chmodSync(dir, mode);
}

export interface AgentIdentity {
  readonly name: string;
  /** The agent's user and its own group. */
  readonly user: FileOwner;
}

/**
 * Writes one agent's home, SSH files (those set: an empty option leaves its file alone) and
 * state directory; returns whether an SSH file changed. `agentsGid`: testflinger-agents.
 */
export function writeAgentFiles(paths: HostPaths, config: CharmConfig, agent: AgentIdentity, agentsGid: number): boolean {
  const home = paths.agentHome(agent.name);
  const sshDir = path.join(home, '.ssh');
  ensureDir(path.dirname(home), ROOT, 0o755);
  ensureDir(home, ROOT, 0o755);
  ensureDir(sshDir, ROOT, 0o755);
  const stateDir = paths.agentStateDir(agent.name);
  ensureDir(path.dirname(stateDir), ROOT, 0o755);
  ensureDir(stateDir, agent.user, 0o700);
  const owners: Record<string, FileOwner> = { id_rsa: { uid: 0, gid: agentsGid }, 'id_rsa.pub': ROOT, config: agent.user };
  let changed = false;
  for (const { file, content, mode } of agentSshFiles(paths, config, agent.name)) {
    const owner = owners[path.basename(file)] as FileOwner;
    if (content !== '') changed = writeFileAtomic(file, content, mode, { owner }) || changed;
  }
  return changed;
}

/** An agent's own SSH files, in its root-owned ~/.ssh (owners: writeAgentFiles). */
export function agentSshFiles(paths: HostPaths, config: CharmConfig, agent: string): SshFileSpec[] {
  const sshDir = path.join(paths.agentHome(agent), '.ssh');
  return [
    { label: `${agent}: ~/.ssh/id_rsa`, file: path.join(sshDir, 'id_rsa'), content: config['ssh-private-key'], mode: 0o640 },
    { label: `${agent}: ~/.ssh/id_rsa.pub`, file: path.join(sshDir, 'id_rsa.pub'), content: config['ssh-public-key'], mode: 0o644 },
    { label: `${agent}: ~/.ssh/config`, file: path.join(sshDir, 'config'), content: config['ssh-config'], mode: 0o644 },
  ];
}
