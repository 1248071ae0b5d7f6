/**
 * The SSH files in ~ubuntu/.ssh, written from root on a unit. The agent user owns that home, and
 * every job runs as that user: these tests plant real links as a real other user and check that
 * root writes and chowns nothing through them. They need root (CI runs as root).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCharmConfig } from '../../src/charm/config';
import { hostPaths } from '../../src/charm/paths';
import { writeSshFiles } from '../../src/charm/ssh';
import { b64, sshKeyPair } from '../helpers/charm';
import { tempDir } from '../helpers/tmp';

const asRoot = process.getuid?.() === 0 ? describe : describe.skip;
/** `nobody` stands in for the agent user: a real, unprivileged uid. */
const agentUser = { uid: 65534, gid: 65534 };
const keys = sshKeyPair();
const config = parseCharmConfig({
  'config-repo': '/srv/repo',
  'config-dir': 'lab1',
  'ssh-private-key': b64(keys.privateKey),
  'ssh-public-key': b64(keys.publicKey),
  'ssh-config': 'Host *\n  ConnectTimeout 5\n',
});

function unitLikeRoot() {
  const root = tempDir('sshroot');
  fs.chmodSync(root, 0o755);
  const paths = hostPaths(root);
  fs.mkdirSync(paths.homeDir, { recursive: true, mode: 0o755 });
  fs.chownSync(paths.homeDir, agentUser.uid, agentUser.gid);
  // A root-owned directory the attacker wants to write into (a conf.d that supervisord reads).
  const target = path.join(root, 'etc', 'supervisor', 'conf.d');
  fs.mkdirSync(target, { recursive: true, mode: 0o755 });
  return { paths, target };
}

asRoot('SSH files on a unit', () => {
  it('are written as the agent user, with their modes', () => {
    const { paths } = unitLikeRoot();
    expect(writeSshFiles(paths, config, agentUser)).toBe(true);
    for (const [file, mode] of [[paths.sshPrivateKey, 0o600], [paths.sshPublicKey, 0o644], [paths.sshConfig, 0o640]] as const) {
      const stat = fs.lstatSync(file);
      expect([stat.uid, stat.gid, stat.mode & 0o7777]).toEqual([agentUser.uid, agentUser.gid, mode]);
    }
    expect(fs.lstatSync(paths.sshDir).uid).toBe(agentUser.uid);
    expect(writeSshFiles(paths, config, agentUser)).toBe(false);
  });

  it('a job that turns ~/.ssh into a link to a root directory gets nothing written or chowned there', () => {
    const { paths, target } = unitLikeRoot();
    fs.symlinkSync(target, paths.sshDir);
    fs.lchownSync(paths.sshDir, agentUser.uid, agentUser.gid);
    expect(() => writeSshFiles(paths, config, agentUser)).toThrow(/^SSH files: /);
    expect(fs.readdirSync(target)).toEqual([]);
    expect(fs.statSync(target).uid).toBe(0);
  });

  it('a job that links one key file elsewhere gets the link replaced, never followed', () => {
    const { paths, target } = unitLikeRoot();
    writeSshFiles(paths, config, agentUser);
    const victim = path.join(target, 'victim.conf');
    fs.writeFileSync(victim, 'root data\n', { mode: 0o644 });
    fs.rmSync(paths.sshConfig);
    fs.symlinkSync(victim, paths.sshConfig);
    writeSshFiles(paths, parseCharmConfig({ ...rawOf(config), 'ssh-config': 'Host *\n  ConnectTimeout 9\n' }), agentUser);
    expect(fs.readFileSync(victim, 'utf8')).toBe('root data\n');
    expect(fs.statSync(victim).uid).toBe(0);
    expect(fs.lstatSync(paths.sshConfig).isFile()).toBe(true);
  });
});

function rawOf(parsed: typeof config): Record<string, string> {
  return {
    'config-repo': '/srv/repo',
    'config-dir': 'lab1',
    'ssh-private-key': b64(parsed['ssh-private-key']),
    'ssh-public-key': b64(parsed['ssh-public-key']),
  };
}
