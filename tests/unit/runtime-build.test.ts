/** The build of update-testflinger branch=...: what reaches npm's config, and how a failed build reads. */
import { buildNpmrc, buildRuntimeFromSource } from '../../src/charm/runtimebuild';
import { runCommand } from '../../src/common/exec';
import { ConfigRepo } from '../helpers/gitrepo';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(60_000);

describe('buildNpmrc', () => {
  it('takes Juju\'s proxy settings first, then the classic variables, and nothing else', () => {
    const env = { JUJU_CHARM_HTTPS_PROXY: 'http://u:p@proxy:3128', https_proxy: 'http://other:1', http_proxy: 'http://plain:3128', NO_PROXY: '127.0.0.1,.lab', HOME: '/root', GIT_ASKPASS: '/x' };
    expect(buildNpmrc(env)).toBe('proxy=http://plain:3128\nhttps-proxy=http://u:p@proxy:3128\nnoproxy=127.0.0.1,.lab\n');
    expect(buildNpmrc({})).toBe('');
  });

  it('leaves out a value that would add a line or a space to the file', () => {
    expect(buildNpmrc({ http_proxy: 'http://p:1\nregistry=http://evil', https_proxy: 'http://a b' })).toBe('');
  });
});

it('a failed build says which npm step failed and why, without the command line', async () => {
  const source = new ConfigRepo('unused');
  source
    .writeFile('package.json', JSON.stringify({ name: 'rt', version: '1.0.0', scripts: { build: 'echo the build broke >&2; exit 3' } }))
    .writeFile('package-lock.json', JSON.stringify({ name: 'rt', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'rt', version: '1.0.0' } } }))
    .commit('broken');
  const work = tempDir('work');
  const gitEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: work, GIT_TERMINAL_PROMPT: '0' };
  await expect(buildRuntimeFromSource(runCommand, { url: source.url, display: 'the source', gitEnv }, 'main', work, { builder: undefined })).rejects.toThrow(
    /^building main of the source failed: npm run build failed \(exit 3\): .*the build broke$/,
  );
});
