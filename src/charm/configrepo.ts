/**
 * The config repository: cloned shallow into a new directory beside the live one, checked, then
 * switched in with one symlink rename, so agents never see a half-written tree and a failed
 * clone leaves the previous tree in place. The clone is root's; its `.git` is root-only. Each
 * agent's directory in it is readable by that agent alone (its confs hold device credentials):
 * before the switch, a directory the live tree has already gets the same owner and mode there
 * (the charm gave it to its agent: root:<agent's group> 0750); a new one is root's alone (0700)
 * until the charm has made its agent's user and gives it (docs/security.md).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256, switchSymlink } from '../common/fsutil';
import { GitError, runGit } from '../common/git';
import { HOST_KEY_REFUSED } from './gitaccess';
import { elide, type GitRemote } from './values';

/** A failure that names the option at fault first, as `juju status` shows it. */
export class ConfigRepoError extends Error {
  override readonly name = 'ConfigRepoError';
  constructor(
    readonly option: 'config-repo' | 'config-branch' | 'config-dir',
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${option}: ${reason}`, options);
  }
}

export interface RepoSource {
  remote: GitRemote;
  branch: string;
  /** Must be a directory inside the tree (not a link out of it), or the new tree is refused. */
  requiredDir: string;
}

export interface SyncResult {
  revision: string;
  /** False when the remote branch still points at the revision already checked out. */
  changed: boolean;
}

const STAMP = 'charm-source';
/** Longest git reason quoted in a status line. */
const REASON_MAX = 120;

/** Identifies what a checkout was cloned from without writing any credential down. */
function sourceId(source: RepoSource): string {
  return sha256(JSON.stringify(source.remote), source.branch);
}

function currentCheckout(link: string): string | undefined {
  try {
    return fs.realpathSync(link);
  } catch {
    return undefined;
  }
}

async function remoteRevision(source: RepoSource, env: Record<string, string>): Promise<string | undefined> {
  try {
    const out = await runGit(['ls-remote', '--end-of-options', source.remote.url, `refs/heads/${source.branch}`, `refs/tags/${source.branch}`], { env });
    return out.split('\n').find((line) => line.trim() !== '')?.split('\t')[0];
  } catch {
    return undefined;
  }
}

/** Says which option a clone failure is about, in words an operator can act on. */
function cloneFailure(error: unknown, source: RepoSource): ConfigRepoError {
  const reason = error instanceof GitError ? error.reason : String(error);
  const stderr = error instanceof GitError ? error.stderr : '';
  if (/Remote branch .* not found|couldn't find remote ref/i.test(stderr)) {
    return new ConfigRepoError('config-branch', `no branch or tag ${elide(source.branch, 60)} in ${elide(source.remote.display, 80)}`, { cause: error });
  }
  if (HOST_KEY_REFUSED.test(stderr)) {
    return new ConfigRepoError('config-repo', 'host key refused: it differs from config-repo-known-hosts or from the key first seen', { cause: error });
  }
  return new ConfigRepoError('config-repo', `cannot clone ${elide(source.remote.display, 80)}: ${elide(reason, REASON_MAX)}`, { cause: error });
}

/** The required dir, resolved without leaving the checkout (a link to /etc is refused). */
function checkRequiredDir(checkout: string, source: RepoSource): void {
  const real = checkout;
  const wanted = path.join(checkout, source.requiredDir);
  let resolved: string;
  try {
    resolved = fs.realpathSync(wanted);
  } catch {
    throw new ConfigRepoError('config-dir', `${source.requiredDir} is not a directory in the repo at ${elide(source.branch, 60)}`);
  }
  if (resolved !== wanted || !fs.statSync(resolved).isDirectory() || !resolved.startsWith(`${real}/`)) {
    throw new ConfigRepoError('config-dir', `${source.requiredDir} is not a plain directory inside the repo (a link or a file)`);
  }
}

export async function syncConfigRepo(link: string, source: RepoSource, env: Record<string, string>): Promise<SyncResult> {
  const live = currentCheckout(link);
  const [liveSource, liveRevision] = live ? readStamp(live) : [];
  const sameSource = liveSource === sourceId(source);
  if (live && sameSource && liveRevision) {
    const remote = await remoteRevision(source, env);
    if (remote === liveRevision) {
      checkRequiredDir(live, source);
      return { revision: liveRevision, changed: false };
    }
  }

  const store = `${link}.d`;
  fs.mkdirSync(store, { recursive: true, mode: 0o755 });
  const staging = path.join(store, `new-${randomBytes(4).toString('hex')}`);
  try {
    await runGit(['clone', '--quiet', '--depth', '1', '--single-branch', '--no-tags', '--branch', source.branch, '--end-of-options', source.remote.url, staging], { env });
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw cloneFailure(error, source);
  }
  let revision: string;
  try {
    revision = (await runGit(['rev-parse', 'HEAD'], { env, cwd: staging })).trim();
    checkRequiredDir(fs.realpathSync(staging), source);
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  // Agents read their directories; git's own files are root's alone.
  fs.chmodSync(path.join(staging, '.git'), 0o700);
  inheritAgentDirAccess(live, staging, source.requiredDir);
  fs.writeFileSync(path.join(staging, '.git', STAMP), `${sourceId(source)}\n${revision}\n`, { mode: 0o600 });
  const target = path.join(store, `${revision.slice(0, 12)}-${randomBytes(3).toString('hex')}`);
  fs.renameSync(staging, target);
  retireRealDirectory(link);
  switchSymlink(link, target);
  for (const old of fs.readdirSync(store)) {
    const oldPath = path.join(store, old);
    if (oldPath !== target) fs.rmSync(oldPath, { recursive: true, force: true });
  }
  return { revision, changed: revision !== liveRevision || !sameSource };
}

/** A real directory (not a link) at `p`, or undefined. */
function realDir(p: string): fs.Stats | undefined {
  const stat = fs.lstatSync(p, { throwIfNoEntry: false });
  return stat?.isDirectory() ? stat : undefined;
}

/**
 * Each agent directory of the new tree as the live tree has it (owner, group, mode), or root's
 * alone when the live tree has none: an agent never loses its confs at the switch, and no other
 * agent gains them. Links and files are left (agents.ts skips them).
 */
function inheritAgentDirAccess(live: string | undefined, staging: string, agentsDir: string): void {
  const dir = path.join(staging, agentsDir);
  const asRoot = process.getuid?.() === 0;
  for (const name of fs.readdirSync(dir)) {
    if (!realDir(path.join(dir, name))) continue;
    const before = live ? realDir(path.join(live, agentsDir, name)) : undefined;
    if (before && asRoot) fs.lchownSync(path.join(dir, name), before.uid, before.gid);
    fs.chmodSync(path.join(dir, name), before ? before.mode & 0o7777 : 0o700);
  }
}

/** A plain directory left by an older charm is moved aside once, so the link can take its place. */
function retireRealDirectory(link: string): void {
  const stat = fs.lstatSync(link, { throwIfNoEntry: false });
  if (stat && !stat.isSymbolicLink()) fs.renameSync(link, `${link}.pre-charm-${Date.now()}`);
}

function readStamp(checkout: string): string[] {
  try {
    return fs.readFileSync(path.join(checkout, '.git', STAMP), 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Opens a real directory without following a link at its last step (the steps before are root's). */
function openRealDir(dir: string): number | undefined {
  try {
    return fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch (error) {
    if (['ENOENT', 'ELOOP', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw error;
  }
}

/** Owner and mode set through a descriptor (no path is followed); false when `dir` is no real directory. */
function setDirAccess(dir: string, uid: number, gid: number, mode: number): boolean {
  const fd = openRealDir(dir);
  if (fd === undefined) return false;
  try {
    fs.fchownSync(fd, uid, gid);
    fs.fchmodSync(fd, mode);
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Every checkout lives in `<link>.d`: root's, with only the agents' group let in (0750), so no
 * other local user reaches any agent's conf; agents reach theirs through the link.
 */
export function restrictCheckouts(link: string, agentsGid: number): void {
  const store = `${link}.d`;
  fs.mkdirSync(store, { recursive: true, mode: 0o750 });
  setDirAccess(store, 0, agentsGid, 0o750);
}

/** The agent's directory in the live checkout, readable by root and the agent's own group (0750). */
export function giveAgentDir(agentDir: string, agentGid: number): void {
  setDirAccess(agentDir, 0, agentGid, 0o750);
}
