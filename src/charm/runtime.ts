/**
 * The device agent runtime on the host: bundles copied into versions/<version>, a `current` link
 * switched in one rename, and wrappers in bin/ that the program files and phase scripts call.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256, switchSymlink, writeFileAtomic } from '../common/fsutil';
import { AGENT_MALLOC_ENV } from '../agent/memory';
import { MQTT_BUNDLE } from '../agent/mqtt/loader';
import type { HostPaths } from './paths';

export const RUNTIME_PROGRAMS = ['testflinger-agent', 'testflinger-device-connector'] as const;
type RuntimeProgram = (typeof RUNTIME_PROGRAMS)[number];
/**
 * Bundles a program loads beside itself, copied with the programs when the build has them (a
 * branch built from before MQTT has none): the agent's MQTT code, read only when MQTT is on.
 */
export const RUNTIME_MODULES = [MQTT_BUNDLE] as const;
/** Versions kept on disk: the current one and the one before, for a quick way back. */
const VERSIONS_KEPT = 2;

/**
 * Where a packed charm holds its Node.js: the layout of Node's own release archives, so npm sits
 * where a node binary expects it (<bin>/../lib/node_modules/npm).
 */
export const SHIPPED_NODE = 'node/bin/node';
export const SHIPPED_NPM_DIR = 'node/lib/node_modules/npm';

/**
 * Node flags per program, chosen by measurement (bench/results.md, "Where an idle agent's
 * private memory is"). On Node 24 the agent runs V8's interpreter only (--lite-mode: no
 * compiled code, smaller feedback; the agent waits on the network and on its jobs' processes,
 * so it does not need optimised JavaScript), and with gc() exposed so that, once idle, it
 * drops start-up's garbage and the bytecode of code that ran once (see src/agent/memory.ts:
 * --bytecode-old-age=1 and --compact-on-every-full-gc let those collections give pages back).
 * Together with AGENT_MALLOC_ENV they take an idle agent from 20 MB to 11-12 MB private.
 *
 * --use-openssl-ca: the agent trusts the host's CA store (/etc/ssl/certs, or SSL_CERT_FILE /
 * SSL_CERT_DIR when set) instead of the ~140 roots built into Node. Node parses every bundled
 * root into memory when it makes its first TLS context (about 0.7 MB that an agent keeps for
 * good); OpenSSL looks the host's hashed certificate directory up by subject, one file per
 * chain. It also lets a lab's private CA, added to the host with update-ca-certificates, be
 * trusted without NODE_EXTRA_CA_CERTS (which still adds to the store).
 */
export const NODE_FLAGS: Record<RuntimeProgram, readonly string[]> = {
  'testflinger-agent': ['--lite-mode', '--expose-gc', '--bytecode-old-age=1', '--compact-on-every-full-gc', '--use-openssl-ca'],
  'testflinger-device-connector': [],
};

/** Environment per program, set by its wrapper (the agent keeps its malloc settings from its jobs). */
export const NODE_ENV: Record<RuntimeProgram, Readonly<Record<string, string>>> = {
  'testflinger-agent': AGENT_MALLOC_ENV,
  'testflinger-device-connector': {},
};

export class RuntimeError extends Error {
  override readonly name = 'RuntimeError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The Node.js the charm's programs run on: the binary shipped in the charm. In a sandbox root
 * (tests, the demo, the benchmark) or a dev checkout without one, the Node running this code, so
 * that those work on a machine with only its own Node.
 */
export function runtimeNodePath(charmDir: string, sandbox: boolean): string {
  const shipped = path.join(charmDir, SHIPPED_NODE);
  return !sandbox && fs.existsSync(shipped) ? shipped : process.execPath;
}

/**
 * A version is named by its content: the bundles and, when it carries its own, the Node binary.
 * The same charm installed twice is the same version, and nothing restarts.
 */
export function runtimeVersionOf(bundleDir: string, label: string, nodeBinary?: string): string {
  const parts = bundleFiles(bundleDir).map((file) => fs.readFileSync(path.join(bundleDir, file)));
  const digest = sha256(...parts, ...(nodeBinary ? [fs.readFileSync(nodeBinary)] : []));
  return `${label}-${digest.slice(0, 12)}`;
}

/** The programs' bundles and the modules the build has, as file names. */
function bundleFiles(bundleDir: string): string[] {
  const modules = RUNTIME_MODULES.map((m) => `${m}.js`).filter((file) => fs.existsSync(path.join(bundleDir, file)));
  return [...RUNTIME_PROGRAMS.map((p) => `${p}.js`), ...modules];
}

export function currentRuntimeVersion(paths: HostPaths): string | null {
  try {
    return path.basename(fs.readlinkSync(paths.runtimeCurrent));
  } catch {
    return null;
  }
}

/**
 * The wrapper that program files and phase scripts call: the node of the version `current`
 * points at (or, in a sandbox, the node given) with the program's flags, on that version's bundle.
 */
export function wrapperScript(paths: HostPaths, program: RuntimeProgram, node: { copied: true } | { path: string }): string {
  const nodeCommand = 'copied' in node ? path.join(paths.runtimeCurrent, 'node') : node.path;
  const env = Object.entries(NODE_ENV[program]).map(([name, value]) => `${name}=${value}`);
  const command = [nodeCommand, ...NODE_FLAGS[program], path.join(paths.runtimeCurrent, `${program}.js`), '"$@"'].join(' ');
  return `#!/bin/sh\n# ${program}, the version ${paths.runtimeCurrent} points at (managed by the charm).\n${env.length ? `export ${env.join(' ')}\n` : ''}exec ${command}\n`;
}

/**
 * Installs the bundles found in bundleDir with nodePath; returns the version now current. On a
 * unit the Node binary is copied into the version, so the runtime needs nothing from the charm
 * directory and survives charm upgrades; a sandbox root (copyNode false) runs nodePath in place,
 * as copying a 100 MB binary into every test's root would only cost time.
 */
export function installRuntime(paths: HostPaths, bundleDir: string, label: string, nodePath: string, options: { copyNode: boolean }): { version: string; changed: boolean } {
  const { copyNode } = options;
  for (const p of RUNTIME_PROGRAMS) {
    if (!fs.existsSync(path.join(bundleDir, `${p}.js`))) throw new RuntimeError(`${bundleDir} has no ${p}.js to install`);
  }
  if (copyNode && !fs.existsSync(nodePath)) throw new RuntimeError(`no Node.js binary at ${nodePath} to install`);
  const version = runtimeVersionOf(bundleDir, label, copyNode ? nodePath : undefined);
  const target = path.join(paths.runtimeVersionsDir, version);
  if (!fs.existsSync(target)) {
    const staging = `${target}.tmp-${randomBytes(3).toString('hex')}`;
    fs.mkdirSync(staging, { recursive: true });
    for (const file of bundleFiles(bundleDir)) fs.copyFileSync(path.join(bundleDir, file), path.join(staging, file));
    if (copyNode) {
      fs.copyFileSync(nodePath, path.join(staging, 'node'));
      fs.chmodSync(path.join(staging, 'node'), 0o755);
    }
    fs.writeFileSync(path.join(staging, 'VERSION'), `${version}\n`);
    fs.renameSync(staging, target);
  }
  // The link first: a wrapper of before runs any version, a new one needs current/node.
  const changed = currentRuntimeVersion(paths) !== version;
  if (changed) switchSymlink(paths.runtimeCurrent, path.join('versions', version));
  const node = copyNode ? ({ copied: true } as const) : { path: nodePath };
  for (const p of RUNTIME_PROGRAMS) writeFileAtomic(path.join(paths.runtimeBinDir, p), wrapperScript(paths, p, node), 0o755);
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

const isExecutable = (file: string) => {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
};

/** The first executable `name` on a PATH, or undefined. */
export function findOnPath(name: string, searchPath = process.env['PATH'] ?? ''): string | undefined {
  return searchPath.split(':').filter(Boolean).map((dir) => path.join(dir, name)).find(isExecutable);
}

/**
 * npm as a program and its leading arguments: the npm beside the node binary (where a packed
 * charm ships it, as Node's release archives do). A dev checkout whose Node came without npm
 * there (Debian's nodejs) uses the npm on PATH. Found before anything runs: a program that is not
 * there would fail late, and execa keeps a timed-out run's timer alive after such a failure.
 */
export function npmCommand(nodePath: string, searchPath = process.env['PATH'] ?? ''): { file: string; args: string[] } {
  const cli = path.resolve(path.dirname(nodePath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  if (fs.existsSync(cli)) return { file: nodePath, args: [cli] };
  const onPath = findOnPath('npm', searchPath);
  if (onPath) return { file: onPath, args: [] };
  throw new RuntimeError(`no npm to build with: none beside ${nodePath} (where the charm ships it) and none on PATH`);
}
