/**
 * Writes testflinger-agent-host_<arch>.charm: what Juju reads (metadata, config, actions, manifest,
 * dispatch), what the charm runs (dist/ bundles, templates, phase scripts) and the Node.js
 * it runs on (node/bin/node for that architecture, npm beside it); no sources, tests or
 * node_modules. The same files, without those charmcraft writes itself, can be laid out in a
 * directory for charmcraft's part.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { MQTT_BUNDLE } from '../agent/mqtt/loader';
import { SHIPPED_NODE, SHIPPED_NPM_DIR } from '../charm/runtime';
import { defaultCacheDir, hostArch, nodeBinary, npmPackageDir, type CharmArch } from './noderuntime';
import { readZip, writeZip, type ZipEntry } from './zip';

export const CHARM_NAME = 'testflinger-agent-host';
export const CHARM_BUNDLES = ['charm', 'testflinger-agent', 'testflinger-device-connector', MQTT_BUNDLE];
const JUJU_FILES = ['metadata.yaml', 'config.yaml', 'actions.yaml'];
const TOP_FILES = [...JUJU_FILES, 'README.md', 'LICENSE'];
const SHIPPED_DIRS = ['templates', 'tf-cmd-scripts', 'cos'];
/** The rules' promtool tests are the project's, not the unit's. */
const NOT_SHIPPED = /^cos\/tests\//;
/** What charmcraft puts in the charm itself; its part must not stage them again. */
const CHARMCRAFT_WRITES = new Set(['manifest.yaml', ...JUJU_FILES]);

export interface PackOptions {
  arch?: CharmArch;
  /** Where the pinned Node.js and npm tarballs are cached (default .cache/node-runtime). */
  cacheDir?: string;
  startedAt?: Date;
}

export function charmFileName(arch: CharmArch): string {
  return `${CHARM_NAME}_${arch}.charm`;
}

/** manifest.yaml with the fields charmcraft writes: the base from charmcraft.yaml, the one architecture packed. */
export function renderManifest(projectDir: string, arch: CharmArch, startedAt: Date): string {
  const project = parseYaml(fs.readFileSync(path.join(projectDir, 'charmcraft.yaml'), 'utf8')) as { base: string; platforms: Record<string, unknown> };
  if (!(arch in project.platforms)) throw new Error(`charmcraft.yaml has no platform ${arch}`);
  const [name, channel] = project.base.split('@') as [string, string];
  return `# Written by \`npm run pack\` (${CHARM_NAME}), with the fields charmcraft writes.\n${stringify({
    'charmcraft-version': '3.5.0',
    'charmcraft-started-at': startedAt.toISOString(),
    bases: [{ name, channel, architectures: [arch] }],
    analysis: { attributes: [{ name: 'language', result: 'javascript' }, { name: 'framework', result: 'unknown' }] },
  })}`;
}

function fileEntry(file: string, name: string, mode?: number): ZipEntry {
  return { name, data: fs.readFileSync(file), mode: mode ?? fs.statSync(file).mode & 0o777 };
}

/** Relative paths of every file under dir, sorted. A walk of our own: charmcraft's build host may run Node 18, whose Dirent has no parentPath. */
function filesUnder(dir: string, rel = ''): string[] {
  return fs
    .readdirSync(path.join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(dir, path.join(rel, e.name)) : e.isFile() ? [path.join(rel, e.name)] : []))
    .sort();
}

/** Every file under dir, named under prefix, with its own mode. */
function treeEntries(dir: string, prefix: string): ZipEntry[] {
  return filesUnder(dir).map((rel) => fileEntry(path.join(dir, rel), path.posix.join(prefix, rel.split(path.sep).join('/'))));
}

/** npm's manuals are not needed to run it. */
const NPM_DOCS = /^node\/lib\/node_modules\/npm\/(docs|man)\//;

function nodeEntries(arch: CharmArch, cacheDir: string): ZipEntry[] {
  const npm = treeEntries(npmPackageDir(cacheDir), SHIPPED_NPM_DIR).filter((e) => !NPM_DOCS.test(e.name));
  return [fileEntry(nodeBinary(arch, cacheDir), SHIPPED_NODE, 0o755), ...npm];
}

export function charmEntries(projectDir: string, options: PackOptions = {}): ZipEntry[] {
  const arch = options.arch ?? hostArch();
  for (const bundle of CHARM_BUNDLES) {
    if (!fs.existsSync(path.join(projectDir, 'dist', `${bundle}.js`))) throw new Error(`dist/${bundle}.js is missing: run npm run build first`);
  }
  const project = (relative: string, mode?: number) => fileEntry(path.join(projectDir, relative), relative, mode);
  return [
    { name: 'manifest.yaml', data: Buffer.from(renderManifest(projectDir, arch, options.startedAt ?? new Date())), mode: 0o644 },
    ...TOP_FILES.map((f) => project(f)),
    project('dispatch', 0o755),
    ...CHARM_BUNDLES.map((b) => project(`dist/${b}.js`, 0o755)),
    ...SHIPPED_DIRS.flatMap((d) => treeEntries(path.join(projectDir, d), d)).filter((e) => !NOT_SHIPPED.test(e.name)),
    ...nodeEntries(arch, options.cacheDir ?? defaultCacheDir(projectDir)),
  ];
}

export function packCharm(projectDir: string, outFile?: string, options: PackOptions = {}): { file: string; arch: CharmArch; bytes: number; members: number } {
  const arch = options.arch ?? hostArch();
  const file = outFile ?? path.join(projectDir, charmFileName(arch));
  const entries = charmEntries(projectDir, { ...options, arch });
  const zip = writeZip(entries);
  fs.writeFileSync(file, zip);
  return { file, arch, bytes: zip.length, members: entries.length };
}

function writeEntries(entries: readonly ZipEntry[], dir: string): void {
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, entry.data, { mode: entry.mode });
    fs.chmodSync(file, entry.mode);
  }
}

/** The charm's files laid out under dir (charmcraft's part install dir), less what charmcraft writes. */
export function stageCharm(projectDir: string, dir: string, options: PackOptions = {}): { members: number } {
  const entries = charmEntries(projectDir, options).filter((e) => !CHARMCRAFT_WRITES.has(e.name));
  writeEntries(entries, dir);
  return { members: entries.length };
}

/** A .charm unpacked into dir with its modes, as Juju unpacks it on a unit. */
export function unpackCharm(charmFile: string, dir: string): void {
  writeEntries(readZip(fs.readFileSync(charmFile)), dir);
}
