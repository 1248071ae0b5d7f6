/**
 * The device agent runtime on the host: bundles copied into versions/<version>, a `current` link
 * switched in one rename, and wrappers in bin/ that the program files and phase scripts call.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Runner } from '../common/exec';
import { sha256, switchSymlink, writeFileAtomic } from '../common/fsutil';
import { gitClient } from '../common/git';
import type { HostPaths } from './paths';

export const RUNTIME_PROGRAMS = ['testflinger-agent', 'testflinger-device-connector'] as const;
/** Versions kept on disk: the current one and the one before, for a quick way back. */
const VERSIONS_KEPT = 2;

export class RuntimeError extends Error {
  override readonly name = 'RuntimeError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function runtimeVersionOf(bundleDir: string, label: string): string {
  const digest = sha256(...RUNTIME_PROGRAMS.map((p) => fs.readFileSync(path.join(bundleDir, `${p}.js`))));
  return `${label}-${digest.slice(0, 12)}`;
}

export function currentRuntimeVersion(paths: HostPaths): string | null {
  try {
    return path.basename(fs.readlinkSync(paths.runtimeCurrent));
  } catch {
    return null;
  }
}

/** Installs the bundles found in bundleDir; returns the version now current. */
export function installRuntime(paths: HostPaths, bundleDir: string, label: string, nodePath: string): { version: string; changed: boolean } {
  for (const p of RUNTIME_PROGRAMS) {
    if (!fs.existsSync(path.join(bundleDir, `${p}.js`))) throw new RuntimeError(`${bundleDir} has no ${p}.js to install`);
  }
  const version = runtimeVersionOf(bundleDir, label);
  const target = path.join(paths.runtimeVersionsDir, version);
  if (!fs.existsSync(target)) {
    const staging = `${target}.tmp-${randomBytes(3).toString('hex')}`;
    fs.mkdirSync(staging, { recursive: true });
    for (const p of RUNTIME_PROGRAMS) fs.copyFileSync(path.join(bundleDir, `${p}.js`), path.join(staging, `${p}.js`));
    fs.writeFileSync(path.join(staging, 'VERSION'), `${version}\n`);
    fs.renameSync(staging, target);
  }
  for (const p of RUNTIME_PROGRAMS) {
    const wrapper = `#!/bin/sh\n# ${p}, the version ${paths.runtimeCurrent} points at (managed by the charm).\nexec ${nodePath} ${path.join(paths.runtimeCurrent, `${p}.js`)} "$@"\n`;
    writeFileAtomic(path.join(paths.runtimeBinDir, p), wrapper, 0o755);
  }
  const changed = currentRuntimeVersion(paths) !== version;
  if (changed) switchSymlink(paths.runtimeCurrent, path.join('versions', version));
  pruneVersions(paths, version);
  return { version, changed };
}

function pruneVersions(paths: HostPaths, current: string): void {
  const versions = fs
    .readdirSync(paths.runtimeVersionsDir)
    .map((name) => ({ name, mtime: fs.statSync(path.join(paths.runtimeVersionsDir, name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  const keep = new Set([current, ...versions.slice(0, VERSIONS_KEPT).map((v) => v.name)]);
  for (const v of versions) if (!keep.has(v.name)) fs.rmSync(path.join(paths.runtimeVersionsDir, v.name), { recursive: true, force: true });
}

/**
 * Builds the runtime from a ref of the project's source: clone, `npm ci`, `npm run build`.
 * Returns the directory holding the built bundles; the caller installs and removes it.
 */
export async function buildRuntimeFromSource(
  run: Runner,
  repoUrl: string,
  ref: string,
  workDir: string,
  home: string,
): Promise<{ bundleDir: string; commit: string }> {
  const checkout = path.join(workDir, `source-${randomBytes(3).toString('hex')}`);
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, GIT_TERMINAL_PROMPT: '0' };
  try {
    await gitClient(env).clone(repoUrl, checkout, ['--no-checkout']);
    await gitClient(env, checkout).checkout(ref);
  } catch (error) {
    throw new RuntimeError(`cannot check out ${ref} of ${repoUrl}: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  const commit = (await gitClient(env, checkout).revparse(['HEAD'])).trim();
  const npmEnv = { ...env, npm_config_cache: path.join(home, '.npm'), CI: 'true' };
  try {
    await run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: checkout, env: npmEnv });
    await run('npm', ['run', 'build'], { cwd: checkout, env: npmEnv });
  } catch (error) {
    throw new RuntimeError(`building ${ref} of ${repoUrl} failed: ${(error as Error).message}`, { cause: error });
  }
  return { bundleDir: path.join(checkout, 'dist'), commit };
}
