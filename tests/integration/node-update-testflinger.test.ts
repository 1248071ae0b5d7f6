/**
 * update-testflinger branch=... on a unit that has only the charm's files: the source build runs
 * on the node and npm shipped in the .charm, with no npm on PATH. The project itself (its working
 * tree, committed to a temp repo) is the agent-source-repo; npm ci runs offline from the npm cache
 * this checkout's own `npm ci` filled, so the test needs no registry.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { packCharm, unpackCharm } from '../../src/pack/pack';
import { ConfigRepo, agentConf, git } from '../helpers/gitrepo';
import { Sandbox } from '../helpers/sandbox';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

jest.setTimeout(300_000);

const NPM_PROGRAMS = new Set(['npm', 'npx', 'corepack']);

/** A PATH with every program of /usr/bin but npm's, and the sbin dirs (merged /usr: /bin is /usr/bin). */
function pathWithoutNpm(): string {
  const bin = tempDir('no-npm-bin');
  for (const name of fs.readdirSync('/usr/bin')) if (!NPM_PROGRAMS.has(name)) fs.symlinkSync(path.join('/usr/bin', name), path.join(bin, name));
  return [bin, '/usr/sbin', '/sbin'].join(':');
}

/** This checkout's files (tracked and new, as they are now), committed to a fresh repo. */
function projectRepo(): ConfigRepo {
  const repo = new ConfigRepo('unused');
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: repoRoot, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of files) {
    if (!fs.existsSync(path.join(repoRoot, file))) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(repo.dir, file)), { recursive: true });
    fs.copyFileSync(path.join(repoRoot, file), path.join(repo.dir, file));
  }
  repo.commit('the project');
  return repo;
}

/** npm's user config in the build's HOME: this machine's npm cache, offline. */
function offlineNpmrc(home: string): void {
  const cache = process.env['npm_config_cache'] ?? path.join(os.homedir(), '.npm');
  fs.mkdirSync(home, { recursive: true });
  fs.writeFileSync(path.join(home, '.npmrc'), `cache=${cache}\noffline=true\naudit=false\nfund=false\nupdate-notifier=false\n`);
}

const savedPath = process.env['PATH'];
afterAll(() => {
  process.env['PATH'] = savedPath;
});

it('builds a branch of agent-source-repo with the shipped npm and node, then switches the agents to it', async () => {
  const unpacked = path.join(tempDir('charm'), 'unpacked');
  const charmFile = path.join(tempDir('pack'), 'x.charm');
  packCharm(repoRoot, charmFile);
  unpackCharm(charmFile, unpacked);
  const lab = new ConfigRepo('lab1');
  lab.addAgent('agent-a', agentConf('agent-a', { server_address: '127.0.0.1:9' })).commit();
  const source = projectRepo();
  git(source.dir, 'branch', 'fix-123');

  // The hooks run with the PATH the emulator passes on, which is this process's.
  process.env['PATH'] = pathWithoutNpm();
  expect(() => execFileSync('/bin/sh', ['-c', 'command -v npm'], { stdio: 'ignore', env: { PATH: process.env['PATH'] } })).toThrow();
  const sandbox = new Sandbox({ 'config-repo': lab.url, 'config-dir': 'lab1', 'agent-source-repo': source.url }, unpacked);
  try {
    await sandbox.hook('install');
    await sandbox.hook('config-changed');
    await eventually(() => sandbox.programs().get('agent-a')?.state === 'RUNNING', 'agent-a RUNNING');
    const before = fs.readlinkSync(sandbox.paths.runtimeCurrent);
    offlineNpmrc(sandbox.paths.stateDir);

    const { failed, message, results } = await sandbox.action('update-testflinger', { branch: 'fix-123' });
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    const commit = git(source.dir, 'rev-parse', 'fix-123').trim();
    expect(results['version']).toMatch(new RegExp(`^src-${commit.slice(0, 12)}-[0-9a-f]{12}$`));
    expect(fs.readlinkSync(sandbox.paths.runtimeCurrent)).toBe(`versions/${results['version']}`);
    expect(fs.readlinkSync(sandbox.paths.runtimeCurrent)).not.toBe(before);
    // The bundle built from source is the one this checkout builds.
    expect(fs.readFileSync(path.join(sandbox.paths.runtimeCurrent, 'testflinger-agent.js'))).toEqual(fs.readFileSync(path.join(repoRoot, 'dist/testflinger-agent.js')));
    expect(results['restarted']).toBe('agent-a');
  } finally {
    process.env['PATH'] = savedPath;
    await sandbox.shutdown();
  }
});
