/**
 * The config repository: cloned shallow into a new directory beside the live one, checked, then
 * switched in with one symlink rename, so agents never see a half-written tree and a failed
 * clone leaves the previous tree in place.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { switchSymlink } from '../common/fsutil';
import { gitClient } from '../common/git';

export class ConfigRepoError extends Error {
  override readonly name = 'ConfigRepoError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface RepoSource {
  url: string;
  branch: string;
  /** Must exist in the tree, or the new tree is refused. */
  requiredDir: string;
}

export interface SyncResult {
  revision: string;
  /** False when the remote branch still points at the revision already checked out. */
  changed: boolean;
}

export interface GitEnv {
  /** Hooks run with no HOME; git wants one. */
  home: string;
  sshKey?: string;
  sshConfig?: string;
}

function gitEnvironment(env: GitEnv): Record<string, string> {
  const vars: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: env.home,
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C.UTF-8',
  };
  if (env.sshKey && fs.existsSync(env.sshKey)) {
    const config = env.sshConfig && fs.existsSync(env.sshConfig) ? ` -F ${env.sshConfig}` : '';
    vars['GIT_SSH_COMMAND'] = `ssh -i ${env.sshKey}${config} -o BatchMode=yes`;
  }
  return vars;
}

/** The link's target directory, whose name carries the revision: `<link>.d/<revision>-<rand>`. */
function currentCheckout(link: string): string | undefined {
  try {
    return fs.realpathSync(link);
  } catch {
    return undefined;
  }
}

async function remoteRevision(url: string, branch: string, env: Record<string, string>): Promise<string | undefined> {
  try {
    const out = await gitClient(env).listRemote([url, branch]);
    return out.split('\n').find((line) => line.trim() !== '')?.split('\t')[0];
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('hint:'));
  return lines.find((l) => l.startsWith('fatal:'))?.replace(/^fatal:\s*/, '') ?? lines[0] ?? 'unknown error';
}

export async function syncConfigRepo(link: string, source: RepoSource, gitEnv: GitEnv): Promise<SyncResult> {
  const env = gitEnvironment(gitEnv);
  const live = currentCheckout(link);
  const liveRevision = live ? readRevisionStamp(live) : undefined;
  const liveSource = live ? readSourceStamp(live) : undefined;
  const sameSource = liveSource === `${source.url}#${source.branch}`;
  if (live && sameSource && liveRevision) {
    const remote = await remoteRevision(source.url, source.branch, env);
    if (remote === liveRevision && fs.existsSync(path.join(live, source.requiredDir))) {
      return { revision: liveRevision, changed: false };
    }
  }

  const store = `${link}.d`;
  fs.mkdirSync(store, { recursive: true });
  const staging = path.join(store, `new-${randomBytes(4).toString('hex')}`);
  try {
    await gitClient(env).clone(source.url, staging, ['--depth', '1', '--single-branch', '--branch', source.branch]);
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw new ConfigRepoError(`cannot clone ${source.url} at ${source.branch}: ${describe(error)}`, { cause: error });
  }
  const revision = (await gitClient(env, staging).revparse(['HEAD'])).trim();
  if (!fs.statSync(path.join(staging, source.requiredDir), { throwIfNoEntry: false })?.isDirectory()) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw new ConfigRepoError(`config-dir ${source.requiredDir} is not a directory in ${source.url} at ${source.branch}`);
  }
  fs.writeFileSync(path.join(staging, '.git', 'charm-source'), `${source.url}#${source.branch}\n${revision}\n`);
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

/** A plain directory left by an older charm is moved aside once, so the link can take its place. */
function retireRealDirectory(link: string): void {
  const stat = fs.lstatSync(link, { throwIfNoEntry: false });
  if (stat && !stat.isSymbolicLink()) fs.renameSync(link, `${link}.pre-charm-${Date.now()}`);
}

function readStamp(checkout: string): string[] {
  try {
    return fs.readFileSync(path.join(checkout, '.git', 'charm-source'), 'utf8').split('\n');
  } catch {
    return [];
  }
}
function readSourceStamp(checkout: string): string | undefined {
  return readStamp(checkout)[0];
}
function readRevisionStamp(checkout: string): string | undefined {
  return readStamp(checkout)[1];
}
