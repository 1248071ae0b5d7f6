/** The .charm archive: what is in it, with which modes, and that its dispatch runs a unit. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { SHIPPED_NODE_LINE, NODE_RELEASES, hostArch } from '../../src/pack/noderuntime';
import { charmEntries, packCharm, stageCharm, unpackCharm } from '../../src/pack/pack';
import { readZip, type ZipEntry } from '../../src/pack/zip';
import { labAgentConf } from '../helpers/charm';
import { ConfigRepo } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';
import { expectStartingOrRunning } from '../helpers/status';

jest.setTimeout(120_000);

/** One .charm for this machine's architecture, packed once for the file (packing deflates 120 MB). */
let charmFile: string;
beforeAll(() => {
  charmFile = path.join(tempDir('pack'), 'x.charm');
  packCharm(repoRoot, charmFile);
});

const entry = (entries: ZipEntry[], name: string) => entries.find((e) => e.name === name);
const manifestOf = (entries: ZipEntry[]) => parse(entry(entries, 'manifest.yaml')!.data.toString()) as Record<string, unknown>;
/** The ELF header's e_machine: 0x3e x86-64, 0xb7 aarch64. */
const elfMachine = (data: Buffer) => (data.subarray(0, 4).toString('latin1') === '\x7fELF' ? data.readUInt16LE(18) : undefined);

it('holds what Juju reads, what the charm runs and the Node.js it runs on, with run bits, and nothing else', () => {
  const entries = readZip(fs.readFileSync(charmFile));
  const names = entries.map((e) => e.name);
  expect(names).toEqual(expect.arrayContaining(['manifest.yaml', 'metadata.yaml', 'config.yaml', 'actions.yaml', 'dispatch', 'dist/charm.js', 'dist/testflinger-agent.js', 'dist/testflinger-device-connector.js', 'dist/testflinger-agent-mqtt.js', 'templates/supervisor-program.conf.hbs', 'tf-cmd-scripts/tf-phase.sh.hbs', 'cos/dashboards/testflinger-agents.json', 'cos/prometheus_alert_rules/testflinger-agents.rules', 'cos/loki_alert_rules/testflinger-agent-logs.rules', 'README.md', 'LICENSE', 'node/bin/node', 'node/lib/node_modules/npm/bin/npm-cli.js', 'node/lib/node_modules/npm/package.json']));
  // Juju >= 3.6 (metadata.yaml's assumes) runs dispatch for every event: no hooks/ (Juju before 2.8 ran those).
  expect(names.filter((n) => n.startsWith('hooks/'))).toEqual([]);
  // node_modules only as npm's own, bundled inside its package.
  expect(names.filter((n) => /node_modules|^src\/|^tests\/|^cos\/tests\/|\.ts$/.test(n) && !n.startsWith('node/lib/node_modules/npm/'))).toEqual([]);
  const mode = (n: string) => entry(entries, n)?.mode;
  for (const exe of ['dispatch', 'dist/charm.js', 'node/bin/node']) expect(mode(exe)).toBe(0o755);
  expect(mode('metadata.yaml')).toBe(0o644);
  expect(manifestOf(entries)).toMatchObject({ 'charmcraft-version': expect.any(String), 'charmcraft-started-at': expect.any(String), bases: [{ name: 'ubuntu', channel: '24.04', architectures: [hostArch()] }] });
  expect(elfMachine(entry(entries, 'node/bin/node')!.data)).toBe(hostArch() === 'amd64' ? 0x3e : 0xb7);
  // charmcraft's entrypoint linter: the last token of dispatch's last line is an executable file in the charm.
  const dispatch = entries.find((e) => e.name === 'dispatch')!.data.toString().trim().split('\n');
  expect(dispatch.at(-1)?.split(/\s+/).at(-1)).toBe('./dist/charm.js');
});

it.each([['amd64', 0x3e], ['arm64', 0xb7]] as const)('for %s, holds the pinned node built for that architecture and says so in its manifest', (arch, machine) => {
  const entries = charmEntries(repoRoot, { arch });
  expect(manifestOf(entries)).toMatchObject({ bases: [{ architectures: [arch] }] });
  expect(elfMachine(entry(entries, 'node/bin/node')!.data)).toBe(machine);
});

it("laid out for charmcraft's part (--into), holds the same files less those charmcraft writes itself", () => {
  const dir = tempDir('stage');
  stageCharm(repoRoot, dir, { arch: 'arm64' });
  for (const own of ['manifest.yaml', 'metadata.yaml', 'config.yaml', 'actions.yaml']) expect(fs.existsSync(path.join(dir, own))).toBe(false);
  for (const exe of ['dispatch', 'dist/charm.js', 'node/bin/node']) expect(fs.statSync(path.join(dir, exe)).mode & 0o777).toBe(0o755);
  expect(elfMachine(fs.readFileSync(path.join(dir, 'node/bin/node')))).toBe(0xb7);
  expect(fs.existsSync(path.join(dir, 'node/lib/node_modules/npm/bin/npm-cli.js'))).toBe(true);
});

it('unpacked, its dispatch runs the charm on the shipped node, which installs and configures an agent host in a sandbox root', async () => {
  const dir = tempDir('charm');
  const unpacked = path.join(dir, 'unpacked');
  unpackCharm(charmFile, unpacked);
  const repo = new ConfigRepo('lab1');
  repo.addAgent('agent-a', labAgentConf('agent-a', { server_address: '127.0.0.1:9' })).commit();
  const sandbox = new Sandbox({ 'config-repo': repo.url, 'config-dir': 'lab1' }, unpacked);
  try {
    await sandbox.hook('install');
    await sandbox.hook('config-changed');
    expectStartingOrRunning(sandbox.status, 1);
    await eventually(() => sandbox.programs().get('agent-a')?.state === 'RUNNING', 'agent-a RUNNING');
    expect(fs.readlinkSync(path.join(sandbox.root, 'srv/testflinger-agent/current'))).toMatch(/^versions\/charm-/);
    // The charm ran on the shipped node (a sandbox's wrappers run the node that runs the charm).
    const wrapper = fs.readFileSync(path.join(sandbox.root, 'srv/testflinger-agent/bin/testflinger-agent'), 'utf8');
    expect(wrapper).toContain(`exec ${fs.realpathSync(path.join(unpacked, 'node/bin/node'))} `);
    const agentPid = sandbox.programs().get('agent-a')!.pid!;
    expect(fs.readlinkSync(`/proc/${agentPid}/exe`)).toBe(fs.realpathSync(path.join(unpacked, 'node/bin/node')));
    expect(execFileSync(path.join(unpacked, 'node/bin/node'), ['--version'], { encoding: 'utf8' }).trim()).toBe(`v${NODE_RELEASES[SHIPPED_NODE_LINE].version}`);
    // The shipped node keeps the bundle's compiled code between hooks, in the charm's own directory.
    expect(fs.readdirSync(path.join(unpacked, '.node-compile-cache')).length).toBeGreaterThan(0);
    // ... and what the charm started did not inherit the cache (the agent runs the same node).
    expect(fs.readFileSync(`/proc/${agentPid}/environ`, 'utf8').split('\0')).not.toContainEqual(expect.stringMatching(/^NODE_COMPILE_CACHE=/));
  } finally {
    await sandbox.shutdown();
  }
});
