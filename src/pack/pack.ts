/**
 * Writes testflinger-agent-host.charm: what Juju reads (metadata, config, actions, manifest,
 * dispatch, hooks/) and what the charm runs (dist/ bundles, templates, phase scripts); no
 * sources, tests or node_modules.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { writeZip, type ZipEntry } from './zip';

export const CHARM_FILE = 'testflinger-agent-host.charm';
export const CHARM_BUNDLES = ['charm', 'testflinger-agent', 'testflinger-device-connector'];
const TOP_FILES = ['metadata.yaml', 'config.yaml', 'actions.yaml', 'README.md', 'LICENSE'];
const SHIPPED_DIRS = ['hooks', 'templates', 'tf-cmd-scripts'];

/** manifest.yaml with the fields charmcraft writes, bases taken from charmcraft.yaml. */
export function renderManifest(projectDir: string, startedAt: Date): string {
  const project = parseYaml(fs.readFileSync(path.join(projectDir, 'charmcraft.yaml'), 'utf8')) as { base: string; platforms: Record<string, unknown> };
  const [name, channel] = project.base.split('@') as [string, string];
  return `# Written by \`npm run pack\` (testflinger-agent-host), with the fields charmcraft writes.\n${stringify({
    'charmcraft-version': '3.5.0',
    'charmcraft-started-at': startedAt.toISOString(),
    bases: [{ name, channel, architectures: Object.keys(project.platforms) }],
    analysis: { attributes: [{ name: 'language', result: 'javascript' }, { name: 'framework', result: 'unknown' }] },
  })}`;
}

function fileEntry(projectDir: string, relative: string): ZipEntry {
  const full = path.join(projectDir, relative);
  return { name: relative, data: fs.readFileSync(full), mode: fs.statSync(full).mode & 0o777 };
}

function dirEntries(projectDir: string, dir: string): ZipEntry[] {
  return fs
    .readdirSync(path.join(projectDir, dir))
    .sort()
    .map((f) => fileEntry(projectDir, path.join(dir, f)));
}

export function charmEntries(projectDir: string, startedAt = new Date()): ZipEntry[] {
  for (const bundle of CHARM_BUNDLES) {
    if (!fs.existsSync(path.join(projectDir, 'dist', `${bundle}.js`))) throw new Error(`dist/${bundle}.js is missing: run npm run build first`);
  }
  return [
    { name: 'manifest.yaml', data: Buffer.from(renderManifest(projectDir, startedAt)), mode: 0o644 },
    ...TOP_FILES.map((f) => fileEntry(projectDir, f)),
    { ...fileEntry(projectDir, 'dispatch'), mode: 0o755 },
    ...dirEntries(projectDir, 'hooks').map((e) => ({ ...e, mode: 0o755 })),
    ...CHARM_BUNDLES.map((b) => ({ ...fileEntry(projectDir, `dist/${b}.js`), mode: 0o755 })),
    ...SHIPPED_DIRS.filter((d) => d !== 'hooks').flatMap((d) => dirEntries(projectDir, d)),
  ];
}

export function packCharm(projectDir: string, outFile = path.join(projectDir, CHARM_FILE)): { file: string; bytes: number; members: number } {
  const entries = charmEntries(projectDir);
  const zip = writeZip(entries);
  fs.writeFileSync(outFile, zip);
  return { file: outFile, bytes: zip.length, members: entries.length };
}
