/**
 * update-testflinger branch=...: the ref is checked before git sees it, so nothing from the action
 * reaches git as an option (a ref of `--pathspec-from-file=/etc/shadow` once echoed the file's
 * first line in the action's failure).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildRuntimeFromSource, validateRef } from '../../src/charm/runtimebuild';
import { runCommand, type Runner } from '../../src/common/exec';
import { charmHarness } from '../helpers/charm';
import { ConfigRepo, git } from '../helpers/gitrepo';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

const SECRET_LINE = 'TOP-SECRET-FIRST-LINE';

function secretFile(): string {
  const file = path.join(tempDir('secret'), 'shadow');
  fs.writeFileSync(file, `${SECRET_LINE}\nsecond line\n`);
  return file;
}

/** A source repo whose build writes the two bundles (no dependencies: npm ci has nothing to fetch). */
function sourceRepo(): ConfigRepo {
  const source = new ConfigRepo('unused');
  source
    .writeFile('package.json', JSON.stringify({ name: 'rt', version: '1.0.0', scripts: { build: 'mkdir -p dist && echo "// agent" > dist/testflinger-agent.js && echo "// conn" > dist/testflinger-device-connector.js' } }))
    .writeFile('package-lock.json', JSON.stringify({ name: 'rt', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'rt', version: '1.0.0' } } }))
    .commit('runtime');
  return source;
}

function recordingRunner(): { run: Runner; calls: string[][] } {
  const calls: string[][] = [];
  return { calls, run: (file, args, options) => (calls.push([file, ...args]), runCommand(file, args, options)) };
}

it('the action with branch=--pathspec-from-file=<file> fails naming the ref, never the file, and keeps the runtime', async () => {
  const { ctx, root } = charmHarness();
  const labRepo = new ConfigRepo('lab1').addAgent('agent-1');
  labRepo.commit('lab');
  const config = { 'config-repo': labRepo.url, 'config-dir': 'lab1', 'agent-source-repo': sourceRepo().url };
  await ctx.run(ctx.on.install(), { config });
  const current = fs.readlinkSync(path.join(root, 'srv/testflinger-agent/current'));
  const out = await ctx.run(ctx.on.action('update-testflinger', { branch: `--pathspec-from-file=${secretFile()}` }), { config });
  expect(out.actionFailure).not.toContain(SECRET_LINE);
  expect(out.actionFailure).toMatch(/update-testflinger failed, charm-[0-9a-f]+ keeps running: refusing ref "--pathspec-from-file=.*": it must be a branch or tag name/);
  expect(fs.readlinkSync(path.join(root, 'srv/testflinger-agent/current'))).toBe(current);
});

it('a refused ref runs nothing at all', async () => {
  const { run, calls } = recordingRunner();
  const work = tempDir('work');
  await expect(buildRuntimeFromSource(run, plainSource(sourceRepo().url, work), `--upload-pack=touch ${work}/pwned`, work, { builder: undefined })).rejects.toThrow(/refusing ref/);
  expect(calls).toEqual([]);
  expect(fs.existsSync(path.join(work, 'pwned'))).toBe(false);
});

it('a branch, a tag and a commit are found, with --end-of-options before every ref git reads and -- before the URL', async () => {
  const source = sourceRepo();
  const commit = git(source.dir, 'rev-parse', 'HEAD').trim();
  git(source.dir, 'tag', '2024.10');
  git(source.dir, 'branch', 'fix/123');
  for (const ref of ['main', 'fix/123', '2024.10', commit, commit.slice(0, 10)]) {
    const { run, calls } = recordingRunner();
    const work = tempDir('work');
    const built = await buildRuntimeFromSource(run, plainSource(source.url, work), ref, work, { builder: undefined });
    expect(built.commit).toBe(commit);
    expect(fs.readFileSync(path.join(built.bundleDir, 'testflinger-agent.js'), 'utf8')).toBe('// agent\n');
    const gitCalls = calls.filter(([file]) => file === 'git');
    expect(gitCalls[0]).toEqual(['git', 'clone', '--quiet', '--no-checkout', '--', source.url, expect.any(String)]);
    for (const call of gitCalls.filter((c) => c.includes('rev-parse'))) expect(call.at(-2)).toBe('--end-of-options');
    expect(gitCalls.at(-1)).toEqual(['git', '-C', expect.any(String), 'checkout', '--quiet', '--detach', commit]);
  }
});

it('a ref that names nothing fails with the reason', async () => {
  const work = tempDir('work');
  await expect(buildRuntimeFromSource(runCommand, plainSource(sourceRepo().url, work), 'no-such-ref', work, { builder: undefined })).rejects.toThrow(/cannot check out no-such-ref of .*: no branch, tag or commit named no-such-ref/);
});

describe('validateRef', () => {
  it.each(['main', 'fix-123', '2024.10', 'release/2.0', 'v1.2.3', 'feature/a_b', 'a'.repeat(200), '0123456789abcdef0123456789abcdef01234567'])('accepts %s', (ref) => {
    expect(validateRef(ref)).toBe(ref);
  });
  it.each(['', '-x', '--end-of-options', '--pathspec-from-file=/etc/shadow', '.hidden', 'a/.b', 'a..b', 'a//b', 'x.lock', 'x.lock/y', 'x/', 'x.', 'a b', 'a~1', 'a^', 'a:b', 'a?', 'a*', 'a[', 'a\\b', 'a@{1}', 'ä', 'a\n', 'a'.repeat(201)])('refuses %j', (ref) => {
    expect(() => validateRef(ref)).toThrow(/refusing ref/);
  });
});

/** A source repo with no credentials: git runs with a plain environment and a HOME of the test's. */
function plainSource(url: string, home: string) {
  return { url, display: url, gitEnv: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, GIT_TERMINAL_PROMPT: '0' } };
}
