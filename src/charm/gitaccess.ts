/**
 * How the charm's own git (run as root) reaches a remote: never through the agents' SSH files,
 * which the agent user can change. It has a root-only copy of the key, no ssh config but its own
 * options, and checks host keys: against `config-repo-known-hosts` when set, else the key first
 * seen is kept and a changed one refused (upstream's hosts take whatever their ssh config says;
 * a lab runs unchanged here, and the key kept is logged with its fingerprint and named in the
 * status until the option pins it: docs/security.md). HTTP(S) credentials go in through the
 * environment, so they never reach argv, `.git/config` or a message.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../common/fsutil';
import type { CharmConfig } from './config';
import type { HostPaths } from './paths';
import type { GitRemote } from './values';

export interface GitAccessInputs {
  privateKey: string;
  knownHosts: string;
}

export const HOST_KEY_REFUSED = /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No [A-Z0-9-]+ host key is known/;

export function gitDir(paths: HostPaths): string {
  return path.join(paths.stateDir, 'git');
}

/** Single-quoted for the shell that runs GIT_SSH_COMMAND; our paths never hold a quote. */
function shellQuoted(value: string): string {
  if (value.includes("'")) throw new Error(`unexpected quote in ${value}`);
  return `'${value}'`;
}

/**
 * The environment for one git call against `remote`. Writes the root-only key and known-hosts
 * files it names (0600 in a 0700 dir under the charm's state).
 */
export function gitEnvironment(paths: HostPaths, remote: GitRemote, inputs: GitAccessInputs): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    // Hooks run with no HOME; git wants one. The machine's own git config is not ours to use.
    HOME: paths.stateDir,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C.UTF-8',
  };
  if (remote.credentials) {
    const basic = Buffer.from(`${remote.credentials.username}:${remote.credentials.password}`).toString('base64');
    Object.assign(env, { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}` });
  }
  if (remote.kind === 'ssh') env['GIT_SSH_COMMAND'] = sshCommand(paths, inputs);
  return env;
}

function sshCommand(paths: HostPaths, inputs: GitAccessInputs): string {
  const dir = gitDir(paths);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const options = ['-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'GlobalKnownHostsFile=/dev/null'];
  if (inputs.privateKey) {
    const key = path.join(dir, 'id_key');
    writeFileAtomic(key, inputs.privateKey, 0o600, { dirMode: 0o700 });
    options.push('-i', shellQuoted(key));
  }
  if (inputs.knownHosts) {
    const pinned = path.join(dir, 'known_hosts');
    writeFileAtomic(pinned, inputs.knownHosts, 0o600, { dirMode: 0o700 });
    options.push('-o', `UserKnownHostsFile=${shellQuoted(pinned)}`, '-o', 'StrictHostKeyChecking=yes');
  } else {
    // Trust on first use, in a file of its own so that pinned keys and first-seen ones never mix.
    const firstSeen = firstSeenFile(paths);
    fs.closeSync(fs.openSync(firstSeen, 'a', 0o600));
    options.push('-o', `UserKnownHostsFile=${shellQuoted(firstSeen)}`, '-o', 'StrictHostKeyChecking=accept-new');
  }
  return ['ssh', ...options].join(' ');
}

function firstSeenFile(paths: HostPaths): string {
  return path.join(gitDir(paths), 'known_hosts.first-seen');
}

/** The known_hosts lines kept on first use so far (ssh appends; the charm never edits them). */
function firstSeenLines(paths: HostPaths): string[] {
  try {
    return fs.readFileSync(firstSeenFile(paths), 'utf8').split('\n').filter((line) => line.trim() !== '');
  } catch {
    return [];
  }
}

/** `[host]:port ssh-ed25519 SHA256:…`: the fingerprint `ssh-keygen -l` shows for a known_hosts line. */
export function hostKeyFingerprint(line: string): string {
  const [hosts = '', type = '', blob = ''] = line.trim().split(/\s+/);
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '');
  return `${hosts} ${type} SHA256:${digest}`;
}

/**
 * Runs `work` (git against a remote) and reports each host key ssh kept on first use meanwhile,
 * with its fingerprint, whether the work succeeded or not: a key is kept before git fails.
 */
export async function reportingFirstSeenKeys<T>(paths: HostPaths, report: (message: string) => Promise<void>, work: () => Promise<T>): Promise<T> {
  const before = new Set(firstSeenLines(paths));
  try {
    return await work();
  } finally {
    for (const line of firstSeenLines(paths).filter((l) => !before.has(l))) {
      await report(`config-repo-known-hosts is empty: kept the SSH host key first seen, ${hostKeyFingerprint(line)}; check it against the server's own and pin it with config-repo-known-hosts (docs/security.md)`);
    }
  }
}

/** The status's note while the config repo's host key is trusted on first use, not pinned. */
export function unpinnedHostKeyNote(config: CharmConfig): string {
  return config['config-repo'].kind === 'ssh' && !config['config-repo-known-hosts'] ? '; config-repo host key trusted on first use, not pinned' : '';
}
