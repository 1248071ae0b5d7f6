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

/** The LTS lines the benchmark compares; one of them is shipped (SHIPPED_NODE_LINE). */
export const NODE_RELEASES = {
  '20': { version: '20.20.2', integrity: { amd64: 'sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==', arm64: 'sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==' } },
  '22': { version: '22.23.5', integrity: { amd64: 'sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==', arm64: 'sha512-e1LOUGKVruPGuLVutn8+Cgm5pI1APm4Kvh+zbb/qe/ZpD9s+TQby5iUgZOWmPpbSKpj0Td8DP1N0NEnXasHizg==' } },
  '24': { version: '24.22.3', integrity: { amd64: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==', arm64: 'sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==' } },
} as const;
export type NodeLine = keyof typeof NODE_RELEASES;

/**
 * Node 20: the only line whose idle agent stays within 11 MB private memory (bench/results.md:
 * 22 and 24 take 3-9 MB more per agent whatever the flags). It is past its end of life, so this is
 * the line to move as soon as the agent's own footprint allows.
 */
export const SHIPPED_NODE_LINE: NodeLine = '20';

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
