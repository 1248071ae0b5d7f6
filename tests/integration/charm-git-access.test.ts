/**
 * The charm's own git against real servers on 127.0.0.1: git's http-backend requiring Basic
 * credentials, and a real sshd. Credentials in a URL reach neither argv nor a file nor a
 * message; the agents' SSH config never runs for root; host keys are checked.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { charmHarness, labAgentConf } from '../helpers/charm';
import { GitHttpServer } from '../helpers/githttp';
import { ConfigRepo, git } from '../helpers/gitrepo';
import { TestSshd, sshKeygen } from '../helpers/sshd';
import { onCleanup, tempDir } from '../helpers/tmp';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const SECRET = 'tok-S3CRET-9f2e';

function bareLab(): { bare: string; projectRoot: string; repo: ConfigRepo } {
  const repo = new ConfigRepo('lab1').addAgent('agent-1', labAgentConf('agent-1'));
  repo.commit('initial');
  const projectRoot = tempDir('gitroot');
  const bare = path.join(projectRoot, 'lab.git');
  git(projectRoot, 'clone', '-q', '--bare', repo.dir, bare);
  return { bare, projectRoot, repo };
}

/** A `git` first on PATH that records every argv it is given, then runs the real one. */
function recordGitArgv(): string {
  const dir = tempDir('gitshim');
  const log = path.join(dir, 'argv.log');
  fs.writeFileSync(path.join(dir, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec /usr/bin/git "$@"\n`, { mode: 0o755 });
  const saved = process.env['PATH'];
  process.env['PATH'] = `${dir}:${saved}`;
  onCleanup(() => {
    process.env['PATH'] = saved;
  });
  return log;
}

/** Every regular file under a dir that contains the text. */
function filesContaining(dir: string, text: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .map((rel) => path.join(dir, rel))
    .filter((file) => fs.lstatSync(file).isFile() && fs.readFileSync(file).includes(text));
}

describe('config-repo over HTTP with credentials in the URL', () => {
  it('clones, and the credentials appear in no argv, file, log, status or action result', async () => {
    const { projectRoot } = bareLab();
    const server = await new GitHttpServer(projectRoot, { username: 'lab', password: SECRET }).start();
    onCleanup(() => server.stop());
    const argvLog = recordGitArgv();
    const { ctx, root } = charmHarness();
    const good = { 'config-repo': server.url('lab.git', `lab:${SECRET}`), 'config-dir': 'lab1' };

    const out = await ctx.run(ctx.on.configChanged(), { config: good });
    expect(out.unitStatus?.message).toBe('1 agent starting');
    expect(server.authorizations).toContain(`Basic ${b64(`lab:${SECRET}`)}`);
    const checkout = fs.realpathSync(path.join(root, 'srv/agent-configs'));
    expect(fs.statSync(path.join(checkout, '.git')).mode & 0o777).toBe(0o700);

    const bad = { ...good, 'config-repo': server.url('lab.git', 'lab:wrong-token') };
    const failed = await ctx.run(ctx.on.configChanged(), { config: bad });
    expect(failed.unitStatus?.message).toMatch(/^config-repo: cannot clone http:\/\/\*\*\*@127\.0\.0\.1:\d+\/lab\.git: /);
    const action = await ctx.run(ctx.on.action('update-configs'), { config: bad });
    expect(action.actionFailure).toMatch(/config-repo: cannot clone http:\/\/\*\*\*@/);

    const seen = [out, failed, action].flatMap((o) => [o.unitStatus?.message ?? '', o.actionFailure ?? '', ...o.logs.map((l) => l.message)]);
    expect(seen.filter((t) => t.includes(SECRET) || t.includes('wrong-token'))).toEqual([]);
    const argv = fs.readFileSync(argvLog, 'utf8');
    expect(argv).toMatch(/clone/);
    expect(argv).not.toContain(SECRET);
    expect(filesContaining(root, SECRET)).toEqual([]);
  });
});

describe('agent-source-repo over HTTP with credentials in the URL', () => {
  it('update-testflinger clones with them, and says so without them', async () => {
    const { projectRoot, repo } = bareLab();
    const server = await new GitHttpServer(projectRoot, { username: 'lab', password: SECRET }).start();
    onCleanup(() => server.stop());
    const argvLog = recordGitArgv();
    const { ctx } = charmHarness();
    const config = { 'config-repo': repo.url, 'config-dir': 'lab1', 'agent-source-repo': server.url('lab.git', `lab:${SECRET}`) };
    await ctx.run(ctx.on.configChanged(), { config });
    // The lab repo is no npm project: the clone works (with the credentials), the build fails.
    const out = await ctx.run(ctx.on.action('update-testflinger', { branch: 'main' }), { config });
    expect(server.authorizations).toContain(`Basic ${b64(`lab:${SECRET}`)}`);
    expect(out.actionFailure).toMatch(/building main of http:\/\/\*\*\*@127\.0\.0\.1:\d+\/lab\.git failed/);
    expect([out.actionFailure ?? '', ...out.logs.map((l) => l.message), fs.readFileSync(argvLog, 'utf8')].filter((t) => t.includes(SECRET))).toEqual([]);
  });
});

describe('config-repo over SSH', () => {
  async function sshLab() {
    const { bare } = bareLab();
    const keys = sshKeygen(path.join(tempDir('labkey'), 'id_ed25519'));
    const sshd = await new TestSshd().start([keys.publicKey]);
    onCleanup(() => sshd.stop());
    const hostKey = fs.readFileSync(path.join(sshd.dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const marker = path.join(tempDir('marker'), 'proxy-ran');
    const config = {
      'config-repo': `ssh://${sshd.user}@127.0.0.1:${sshd.port}${bare}`,
      'config-dir': 'lab1',
      'ssh-private-key': b64(fs.readFileSync(keys.privateKey, 'utf8')),
      // The agents' SSH config: a ProxyCommand here must never run for the charm's git.
      'ssh-config': `Host *\n  ProxyCommand sh -c 'touch ${marker}; exec nc %h %p'\n`,
    };
    return { sshd, hostKey: `[127.0.0.1]:${sshd.port} ${hostKey}`, marker, config };
  }

  it("checks the host against config-repo-known-hosts and never uses the agents' ssh config", async () => {
    const lab = await sshLab();
    const { ctx, root } = charmHarness();
    const otherKey = fs.readFileSync(`${sshKeygen(path.join(tempDir('other'), 'k')).privateKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');

    const refused = await ctx.run(ctx.on.configChanged(), { config: { ...lab.config, 'config-repo-known-hosts': `[127.0.0.1]:${lab.sshd.port} ${otherKey}\n` } });
    expect(refused.unitStatus?.message).toMatch(/^config-repo: host key refused/);

    const pinned = await ctx.run(ctx.on.configChanged(), { config: { ...lab.config, 'config-repo-known-hosts': `${lab.hostKey}\n` } });
    expect(pinned.unitStatus?.message).toBe('1 agent starting');
    // A job rewrites the agents' ssh config; the charm's next fetch must not read it either.
    fs.appendFileSync(path.join(root, 'home/ubuntu/.ssh/config'), `Host 127.0.0.1\n  ProxyCommand touch ${lab.marker}\n`);
    await ctx.run(ctx.on.action('update-configs'), { config: { ...lab.config, 'config-repo-known-hosts': `${lab.hostKey}\n` } });
    expect(fs.existsSync(lab.marker)).toBe(false);
  });

  it('with no known hosts set: keeps the key first seen, logs its fingerprint once, says so in the status until pinned', async () => {
    const lab = await sshLab();
    const { ctx } = charmHarness();
    const first = await ctx.run(ctx.on.configChanged(), { config: lab.config });
    expect(first.unitStatus?.message).toBe('1 agent starting; config-repo host key trusted on first use, not pinned');
    // The fingerprint as ssh-keygen shows it, for the operator to compare with the server's own.
    const fingerprint = /SHA256:\S+/.exec(execFileSync('ssh-keygen', ['-lf', path.join(lab.sshd.dir, 'host_key.pub')], { encoding: 'utf8' }))?.[0];
    const kept = `kept the SSH host key first seen, [127.0.0.1]:${lab.sshd.port} ${lab.hostKey.split(' ')[1]} ${fingerprint}; check it against the server's own and pin it with config-repo-known-hosts`;
    expect(first.logs.filter((l) => l.message.includes(kept))).toHaveLength(1);

    const again = await ctx.run(ctx.on.action('update-configs'), { config: lab.config });
    expect(again.logs.filter((l) => l.message.includes('kept the SSH host key'))).toEqual([]);
    expect(again.unitStatus?.message).toMatch(/; config-repo host key trusted on first use, not pinned$/);

    const pinned = await ctx.run(ctx.on.configChanged(), { config: { ...lab.config, 'config-repo-known-hosts': `${lab.hostKey}\n` } });
    expect(pinned.unitStatus?.message).not.toMatch(/host key/);
  });

  it('with no known hosts set: refuses a changed key, keeping the tree', async () => {
    const lab = await sshLab();
    const { ctx, root } = charmHarness();
    await ctx.run(ctx.on.configChanged(), { config: lab.config });
    const firstSeen = path.join(root, 'var/lib/testflinger-agent-host/git/known_hosts.first-seen');
    expect(fs.readFileSync(firstSeen, 'utf8')).toContain(lab.hostKey.split(' ')[2]);
    expect(fs.statSync(firstSeen).mode & 0o777).toBe(0o600);

    // The server now answers with another key (as a man in the middle would).
    const imposter = fs.readFileSync(`${sshKeygen(path.join(tempDir('imp'), 'k')).privateKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    fs.writeFileSync(firstSeen, `[127.0.0.1]:${lab.sshd.port} ${imposter}\n`);
    const changed = await ctx.run(ctx.on.action('update-configs'), { config: lab.config });
    expect(changed.actionFailure).toMatch(/config-repo: host key refused/);
    expect(fs.existsSync(path.join(root, 'srv/agent-configs/lab1/agent-1/testflinger-agent.conf'))).toBe(true);
    expect(fs.existsSync(lab.marker)).toBe(false);
  });
});
