/**
 * The Node.js the charm ships: `node` from the npm registry's node-linux-<cpu> packages and the
 * `npm` package (pure JS, for update-testflinger's source builds). Every tarball is fetched with
 * `npm pack` and checked against the integrity pinned here, so a pack never takes an unpinned
 * byte; extracted files are cached under .cache/node-runtime.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar';

export const CHARM_ARCHES = ['amd64', 'arm64'] as const;
export type CharmArch = (typeof CHARM_ARCHES)[number];

export interface PinnedPackage {
  name: string;
  version: string;
  /** The registry's dist.integrity (sha512) of the tarball. */
  integrity: string;
}

/** Juju's architecture names to the registry packages' cpu names. */
const NODE_CPU: Record<CharmArch, string> = { amd64: 'x64', arm64: 'arm64' };

/**
 * The lines the benchmark compares; one of them is shipped (SHIPPED_NODE_LINE). 20 is the line
 * shipped before (the benchmark's baseline), 26 the newest line the registry has.
 */
export const NODE_RELEASES = {
  '20': { version: '20.20.2', integrity: { amd64: 'sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==', arm64: 'sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==' } },
  '24': { version: '24.22.3', integrity: { amd64: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==', arm64: 'sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==' } },
  '26': { version: '26.12.1', integrity: { amd64: 'sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==', arm64: 'sha512-8Oxs6Y7rDcKufVIM/zYRSwytj46WOrZk7yFCLTKDcs17bBjAeD9HMAqo97hMfMyxozIud0S4vZCs5WB/3iavNQ==' } },
} as const;
export type NodeLine = keyof typeof NODE_RELEASES;

/**
 * Node 24 (LTS "Krypton", supported until April 2028): Node 20 reached its end of life in April
 * 2026. 26 is not shipped: the newest 26 in the registry (26.12.1) is a Current release, not an
 * LTS one (its process.release.lts is unset), and its idle agent measures the same as 24's
 * (bench/results.md). An idle agent on 24 with the charm's flags (src/charm/runtime.ts) takes
 * 11-12 MB private, against 9.5-10 MB on Node 20 with V8's defaults.
 */
export const SHIPPED_NODE_LINE: NodeLine = '24';

/** npm 11 runs on Node ^20.17 || >= 22.9, so on every line above. */
export const SHIPPED_NPM: PinnedPackage = {
  name: 'npm',
  version: '11.21.2',
  integrity: 'sha512-7HPApk+AflMUavSseL1Pm6CnYqMIHk53x+KmuhqmTDqPkjPMgxIpTPcTqsE91EKNw4gFBJV9fnXiSdGm1DXq9A==',
};

export function defaultCacheDir(projectDir: string): string {
  return path.join(projectDir, '.cache', 'node-runtime');
}

export function hostArch(): CharmArch {
  const byNodeArch: Record<string, CharmArch> = { x64: 'amd64', arm64: 'arm64' };
  const arch = byNodeArch[process.arch];
  if (!arch) throw new Error(`no Node.js package for this machine's architecture (${process.arch}); pass --arch amd64 or --arch arm64`);
  return arch;
}

export function parseArch(value: string): CharmArch {
  if ((CHARM_ARCHES as readonly string[]).includes(value)) return value as CharmArch;
  throw new Error(`unknown architecture ${JSON.stringify(value)}: use one of ${CHARM_ARCHES.join(', ')}`);
}

export function nodePackage(arch: CharmArch, line: NodeLine = SHIPPED_NODE_LINE): PinnedPackage {
  const release = NODE_RELEASES[line];
  return { name: `node-linux-${NODE_CPU[arch]}`, version: release.version, integrity: release.integrity[arch] };
}

function integrityOf(file: string): string {
  return `sha512-${createHash('sha512').update(fs.readFileSync(file)).digest('base64')}`;
}

/** The package's tarball, fetched once with the npm client and checked on every use. */
function pinnedTarball(pkg: PinnedPackage, cacheDir: string): string {
  const dir = path.join(cacheDir, 'tarballs');
  const file = path.join(dir, `${pkg.name}-${pkg.version}.tgz`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('npm', ['pack', `${pkg.name}@${pkg.version}`, '--pack-destination', dir, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const actual = integrityOf(file);
  if (actual !== pkg.integrity) {
    fs.rmSync(file, { force: true });
    throw new Error(`${pkg.name}@${pkg.version}: the tarball's integrity ${actual} is not the pinned ${pkg.integrity}`);
  }
  return file;
}

/** Extracts (part of) a pinned tarball into cacheDir/<name>-<version>, once, via a staging dir. */
function extracted(pkg: PinnedPackage, cacheDir: string, filter?: (entry: string) => boolean): string {
  const target = path.join(cacheDir, `${pkg.name}-${pkg.version}`);
  if (fs.existsSync(target)) return target;
  const tarball = pinnedTarball(pkg, cacheDir);
  const staging = `${target}.tmp-${randomBytes(3).toString('hex')}`;
  fs.mkdirSync(staging, { recursive: true });
  tar.x({ file: tarball, cwd: staging, sync: true, strip: 1, ...(filter ? { filter: (p: string) => filter(p) } : {}) });
  fs.renameSync(staging, target);
  return target;
}

/** The path of the pinned `node` binary for arch (fetched and extracted on first use). */
export function nodeBinary(arch: CharmArch, cacheDir: string, line: NodeLine = SHIPPED_NODE_LINE): string {
  return path.join(extracted(nodePackage(arch, line), cacheDir, (p) => p === 'package/bin/node'), 'bin', 'node');
}

/** The directory of the pinned npm package (its package.json, bin/npm-cli.js, bundled node_modules). */
export function npmPackageDir(cacheDir: string): string {
  return extracted(SHIPPED_NPM, cacheDir);
}
