/** The .charm archive: what is in it, with which modes, and that its dispatch runs a unit. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { packCharm } from '../../src/pack/pack';
import { readZip } from '../../src/pack/zip';
import { labAgentConf } from '../helpers/charm';
import { ConfigRepo } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

it('holds what Juju reads and the charm runs, with run bits, and nothing else', () => {
  const out = path.join(tempDir('pack'), 'testflinger-agent-host.charm');
  packCharm(repoRoot, out);
  const entries = readZip(fs.readFileSync(out));
  const names = entries.map((e) => e.name);
  expect(names).toEqual(expect.arrayContaining(['manifest.yaml', 'metadata.yaml', 'config.yaml', 'actions.yaml', 'dispatch', 'hooks/install', 'hooks/config-changed', 'hooks/upgrade-charm', 'dist/charm.js', 'dist/testflinger-agent.js', 'dist/testflinger-device-connector.js', 'templates/supervisor-program.conf.hbs', 'tf-cmd-scripts/tf-phase.sh.hbs', 'README.md', 'LICENSE']));
  expect(names.filter((n) => /node_modules|^src\/|^tests\/|\.ts$/.test(n))).toEqual([]);
  const mode = (n: string) => entries.find((e) => e.name === n)?.mode;
  for (const exe of ['dispatch', 'hooks/install', 'dist/charm.js']) expect(mode(exe)).toBe(0o755);
  expect(mode('metadata.yaml')).toBe(0o644);
  const manifest = parse(entries.find((e) => e.name === 'manifest.yaml')!.data.toString()) as Record<string, unknown>;
  expect(manifest).toMatchObject({ 'charmcraft-version': expect.any(String), 'charmcraft-started-at': expect.any(String), bases: [{ name: 'ubuntu', channel: '24.04', architectures: ['amd64', 'arm64'] }] });
  // charmcraft's entrypoint linter: the last token of dispatch's last line is an executable file in the charm.
  const dispatch = entries.find((e) => e.name === 'dispatch')!.data.toString().trim().split('\n');
  expect(dispatch.at(-1)?.split(/\s+/).at(-1)).toBe('./dist/charm.js');
});

it('unpacked, its dispatch installs and configures an agent host in a sandbox root', async () => {
  const dir = tempDir('charm');
  const out = path.join(dir, 'x.charm');
  packCharm(repoRoot, out);
  const unpacked = path.join(dir, 'unpacked');
  for (const entry of readZip(fs.readFileSync(out))) {
    const file = path.join(unpacked, entry.name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, entry.data, { mode: entry.mode });
  }
  const repo = new ConfigRepo('lab1');
  repo.addAgent('agent-a', labAgentConf('agent-a', { server_address: '127.0.0.1:9' })).commit();
  const sandbox = new Sandbox({ 'config-repo': repo.url, 'config-dir': 'lab1' }, unpacked);
  try {
    await sandbox.hook('install');
    await sandbox.hook('config-changed');
    expect(sandbox.status).toEqual({ status: 'active', message: '1 agent running' });
    await eventually(() => sandbox.programs().get('agent-a')?.state === 'RUNNING', 'agent-a RUNNING');
    expect(fs.readlinkSync(path.join(sandbox.root, 'srv/testflinger-agent/current'))).toMatch(/^versions\/charm-/);
  } finally {
    await sandbox.shutdown();
  }
});
