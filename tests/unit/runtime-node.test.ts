/**
 * The runtime carries its own Node.js on a unit: the binary is copied into each version, the
 * wrappers run it from `current`, and a version is named by its content, node included.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostPaths } from '../../src/charm/paths';
import { AGENT_MALLOC_ENV } from '../../src/agent/memory';
import { NODE_ENV, NODE_FLAGS, installRuntime, npmCommand, runtimeNodePath } from '../../src/charm/runtime';
import { tempDir } from '../helpers/tmp';

/** Bundles that print which node runs them, with which flags and which program environment. */
function bundles(): string {
  const dir = tempDir('bundles');
  const report = `process.stdout.write(JSON.stringify({ execPath: process.execPath, execArgv: process.execArgv, args: process.argv.slice(2), env: Object.fromEntries(${JSON.stringify(Object.keys(AGENT_MALLOC_ENV))}.map((k) => [k, process.env[k]])) }));\n`;
  for (const p of ['testflinger-agent', 'testflinger-device-connector']) fs.writeFileSync(path.join(dir, `${p}.js`), report);
  return dir;
}

/** A stand-in for the charm's node/bin/node: a copy of this Node, tagged so two builds differ. */
function charmNode(tag: string): string {
  const file = path.join(tempDir('charm'), 'node');
  fs.copyFileSync(process.execPath, file);
  fs.appendFileSync(file, tag);
  fs.chmodSync(file, 0o755);
  return file;
}

const runWrapper = (root: string, program: string, ...args: string[]) =>
  JSON.parse(execFileSync(path.join(root, 'srv/testflinger-agent/bin', program), args, { encoding: 'utf8', env: { PATH: process.env['PATH'] } })) as { execPath: string; execArgv: string[]; args: string[]; env: Record<string, string | undefined> };

it('copies the node into the version; the wrappers run it with the program flags and environment, and keep running it once the charm is gone', () => {
  // The shipped flags may be none (the measured choice): give the agent one, to see it arrive.
  const shippedFlags = NODE_FLAGS['testflinger-agent'];
  NODE_FLAGS['testflinger-agent'] = ['--stack-size=900'];
  try {
    const root = tempDir('root');
    const paths = hostPaths(root);
    const node = charmNode('build-1');
    const { version } = installRuntime(paths, bundles(), 'charm', node, { copyNode: true });
    const copied = path.join(paths.runtimeVersionsDir, version, 'node');
    expect(fs.readFileSync(copied).equals(fs.readFileSync(node))).toBe(true);
    expect(fs.statSync(copied).mode & 0o777).toBe(0o755);
    fs.rmSync(path.dirname(node), { recursive: true });
    const agent = runWrapper(root, 'testflinger-agent', '-c', 'x.conf');
    expect(agent.execPath).toBe(copied);
    expect(agent.execArgv).toEqual(['--stack-size=900']);
    expect(agent.args).toEqual(['-c', 'x.conf']);
    expect(agent.env).toEqual(NODE_ENV['testflinger-agent']);
    const connector = runWrapper(root, 'testflinger-device-connector');
    expect(connector.execArgv).toEqual(NODE_FLAGS['testflinger-device-connector']);
    expect(Object.values(connector.env).filter((v) => v !== undefined)).toEqual([]);
  } finally {
    NODE_FLAGS['testflinger-agent'] = shippedFlags;
  }
});

it('names a version by bundles and node: the same pair is the same version, a new node is a new one', () => {
  const paths = hostPaths(tempDir('root'));
  const dir = bundles();
  const first = installRuntime(paths, dir, 'charm', charmNode('build-1'), { copyNode: true });
  const again = installRuntime(paths, dir, 'charm', charmNode('build-1'), { copyNode: true });
  expect(again).toEqual({ version: first.version, changed: false });
  const newNode = installRuntime(paths, dir, 'charm', charmNode('build-2'), { copyNode: true });
  expect(newNode.changed).toBe(true);
  expect(newNode.version).not.toBe(first.version);
  expect(fs.readlinkSync(paths.runtimeCurrent)).toBe(`versions/${newNode.version}`);
});

it('in a sandbox root, runs the given node in place and copies nothing', () => {
  const root = tempDir('root');
  const paths = hostPaths(root);
  const { version } = installRuntime(paths, bundles(), 'charm', process.execPath, { copyNode: false });
  expect(fs.existsSync(path.join(paths.runtimeVersionsDir, version, 'node'))).toBe(false);
  expect(runWrapper(root, 'testflinger-agent').execPath).toBe(fs.realpathSync(process.execPath));
});

it("the charm's own node is its shipped binary on a unit; in a sandbox or a checkout without one, the node running the charm", () => {
  const charmDir = tempDir('charm');
  expect(runtimeNodePath(charmDir, false)).toBe(process.execPath);
  fs.mkdirSync(path.join(charmDir, 'node/bin'), { recursive: true });
  fs.writeFileSync(path.join(charmDir, 'node/bin/node'), '');
  expect(runtimeNodePath(charmDir, false)).toBe(path.join(charmDir, 'node/bin/node'));
  expect(runtimeNodePath(charmDir, true)).toBe(process.execPath);
});

it('builds with the npm beside the node (where the charm ships it), else the one on PATH, else says there is none', () => {
  const charm = tempDir('charm');
  const node = path.join(charm, 'node/bin/node');
  const cli = path.join(charm, 'node/lib/node_modules/npm/bin/npm-cli.js');
  const pathDir = tempDir('path');
  expect(() => npmCommand(node, pathDir)).toThrow(/no npm to build with: none beside .*node\/bin\/node .* and none on PATH/);
  fs.writeFileSync(path.join(pathDir, 'npm'), '#!/bin/sh\n', { mode: 0o755 });
  expect(npmCommand(node, pathDir)).toEqual({ file: path.join(pathDir, 'npm'), args: [] });
  fs.mkdirSync(path.dirname(cli), { recursive: true });
  fs.writeFileSync(cli, '');
  expect(npmCommand(node, pathDir)).toEqual({ file: node, args: [cli] });
});
