/**
 * update-testflinger branch=... on a unit, for real (tests/helpers/unithost.ts: real users in
 * private namespaces, as root): the branch is someone else's code. Its lifecycle scripts never
 * run; its build runs as the build user (not root, in no group of the agents'), leaves no process
 * behind, and root takes only its two bundles, never through a link the build planted.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigRepo, git } from '../helpers/gitrepo';
import { tempDir } from '../helpers/tmp';
import { UnitHost, charmLayoutWithNode, describeOnUnitHost } from '../helpers/unithost';

const BUILD_USER = 'testflinger-build';
const tag = randomBytes(4).toString('hex');
/** Where a lifecycle script would leave its mark: /tmp, which any user can write. */
const LIFECYCLE_MARK = `/tmp/lifecycle-ran-${tag}`;
/** A file only root can make: the build tries. */
const ROOT_ONLY = `/etc/build-was-root-${tag}`;

/**
 * The build script: it tries to write as root, starts a process meant to outlive it, and writes
 * the bundles saying whose uid built them. `link` makes the connector's bundle a link to /etc/shadow.
 */
function buildScript(link: boolean): string {
  return `const fs = require('fs');
let root = 'no';
try { fs.writeFileSync('${ROOT_ONLY}', 'x'); root = 'yes'; } catch {}
require('child_process').spawn('sleep', ['600'], { detached: true, stdio: 'ignore' }).unref();
fs.mkdirSync('dist', { recursive: true });
const body = '// built by uid ' + process.getuid() + ', root write: ' + root + '\\nsetInterval(() => {}, 1 << 30);\\n';
fs.writeFileSync('dist/testflinger-agent.js', body);
${link ? "fs.symlinkSync('/etc/shadow', 'dist/testflinger-device-connector.js');" : "fs.writeFileSync('dist/testflinger-device-connector.js', body);"}
`;
}

/** A branch of a source repo with lifecycle scripts that would mark LIFECYCLE_MARK, and that build. */
function sourceRepo(): ConfigRepo {
  const mark = `sh -c 'id -u >> ${LIFECYCLE_MARK}'`;
  const scripts = { preinstall: mark, install: mark, postinstall: mark, prepare: mark, build: 'node build.js' };
  const source = new ConfigRepo('unused');
  source
    .writeFile('package.json', JSON.stringify({ name: 'rt', version: '1.0.0', scripts }))
    .writeFile('package-lock.json', JSON.stringify({ name: 'rt', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'rt', version: '1.0.0' } } }))
    .writeFile('build.js', buildScript(false))
    .commit('a runtime that tries its luck');
  git(source.dir, 'checkout', '--quiet', '-b', 'links');
  source.writeFile('build.js', buildScript(true)).commit('a bundle that is a link');
  git(source.dir, 'checkout', '--quiet', 'main');
  return source;
}

/** A unit host with one agent, whose agent-source-repo is sourceRepo(), installed. */
async function deployedHost(charmDir?: string): Promise<UnitHost> {
  const lab = new ConfigRepo('lab1').addAgent('agent-1');
  lab.commit('one agent');
  const source = sourceRepo();
  const host = await UnitHost.start({ config: { 'config-repo': lab.url, 'config-dir': 'lab1', 'agent-source-repo': source.url }, keep: [lab.dir, source.dir], ...(charmDir ? { charmDir } : {}) });
  await host.hook('install');
  return host;
}

/**
 * A charm directory as a packed charm has it (its own node and npm, real files), in a directory
 * only root may enter, as a unit's charm directory may be.
 */
function charmWithOwnNode(): string {
  const dir = charmLayoutWithNode(path.join(tempDir('charm'), 'charm'));
  const node = path.join(dir, 'node/bin/node');
  fs.rmSync(node);
  fs.copyFileSync(process.execPath, node);
  fs.chmodSync(node, 0o755);
  const npm = path.resolve(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  fs.cpSync(npm, path.join(dir, 'node/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  // The charm directory itself (its parents inside the unit host are made afresh, open).
  fs.chmodSync(dir, 0o700);
  return dir;
}

describeOnUnitHost('update-testflinger builds a branch as the build user', () => {
  let host: UnitHost;

  beforeAll(async () => {
    host = await deployedHost();
  }, 240_000);

  afterAll(async () => {
    await host?.stop();
  });

  it('runs no lifecycle script, builds as the build user, leaves no process, and installs the bundles', async () => {
    const { failed, message, results } = await host.action('update-testflinger', { branch: 'main' });
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    const builder = await host.userIds(BUILD_USER);
    expect(builder.uid).not.toBe(0);
    expect(await host.exists(LIFECYCLE_MARK)).toBe(false);
    expect(await host.exists(ROOT_ONLY)).toBe(false);
    const installed = await host.readFile('/srv/testflinger-agent/current/testflinger-agent.js');
    expect(installed).toBe(`// built by uid ${builder.uid}, root write: no\nsetInterval(() => {}, 1 << 30);\n`);
    expect(await host.readFile('/srv/testflinger-agent/current/testflinger-device-connector.js')).toBe(installed);
    expect(await host.stat('/srv/testflinger-agent/current/testflinger-agent.js')).toMatchObject({ uid: 0, type: 'regular file' });
    expect(String(results['version'])).toMatch(/^src-[0-9a-f]{12}-[0-9a-f]{12}$/);
    // The process the build started ended with it (its PID namespace did).
    expect(await host.pidsOf(BUILD_USER)).toEqual([]);
    // A locked system user, in no group but its own, that no one logs in as.
    expect((await host.check(['id', '-nG', BUILD_USER])).trim()).toBe(BUILD_USER);
    expect((await host.check(['getent', 'passwd', BUILD_USER])).trim()).toMatch(/:\/usr\/sbin\/nologin$/);
    expect((await host.check(['getent', 'shadow', BUILD_USER])).split(':')[7]).toBe('1');
  }, 240_000);

  it('refuses a bundle the build made a link (to /etc/shadow), and keeps the runtime', async () => {
    const before = await host.check(['readlink', '/srv/testflinger-agent/current']);
    const { failed, message } = await host.action('update-testflinger', { branch: 'links' });
    expect(failed).toBe(true);
    expect(message).toMatch(/update-testflinger failed, .* keeps running: the build left no usable testflinger-device-connector\.js: .*ELOOP/);
    expect(await host.check(['readlink', '/srv/testflinger-agent/current'])).toBe(before);
  }, 240_000);
});

describeOnUnitHost('update-testflinger on a unit whose charm directory the build user cannot enter', () => {
  let host: UnitHost;

  beforeAll(async () => {
    host = await deployedHost(charmWithOwnNode());
  }, 240_000);

  afterAll(async () => {
    await host?.stop();
  });

  it('builds with copies of the charm\'s node and npm, as the build user', async () => {
    const { failed, message } = await host.action('update-testflinger', { branch: 'main' });
    expect({ failed, message }).toEqual({ failed: false, message: '' });
    const builder = await host.userIds(BUILD_USER);
    expect(await host.readFile('/srv/testflinger-agent/current/testflinger-agent.js')).toMatch(new RegExp(`^// built by uid ${builder.uid}, root write: no\n`));
  }, 240_000);
});
