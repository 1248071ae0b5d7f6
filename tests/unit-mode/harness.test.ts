/**
 * The unit-mode test host itself: what the charm writes inside stays inside, the test's own
 * files are shared, commands run as the user asked, the systemctl stand-in behaves as Debian's
 * supervisor.service, and stopping the host ends every process in it.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { eventually, tempDir } from '../helpers/tmp';
import { UnitHost, describeOnUnitHost } from '../helpers/unithost';


/** Every place the charm writes on a unit, and a file name no one else uses. */
const PRIVATE_DIRS = ['/etc/supervisor/conf.d', '/srv', '/home', '/usr/local/bin', '/var/lib', '/var/log/supervisor', '/var/run', '/tmp'];
const probe = `unithost-probe-${randomBytes(4).toString('hex')}`;

describeOnUnitHost('the unit-mode test host', () => {
  let host: UnitHost;
  let shared: string;
  const realPasswd = fs.readFileSync('/etc/passwd', 'utf8');

  beforeAll(async () => {
    shared = tempDir('shared');
    host = await UnitHost.start({ keep: [shared] });
  });

  afterAll(async () => {
    await host?.stop();
  });

  it('keeps what is written inside (files, a new user) inside', async () => {
    for (const dir of PRIVATE_DIRS) await host.writeFile(path.join(dir, probe), 'inside\n');
    await host.check(['useradd', '--create-home', 'ubuntu']);
    for (const dir of PRIVATE_DIRS) {
      expect(await host.readFile(path.join(dir, probe))).toBe('inside\n');
      expect({ dir, outside: fs.existsSync(path.join(dir, probe)) }).toEqual({ dir, outside: false });
    }
    expect(await host.exists('/home/ubuntu/.profile')).toBe(true);
    expect(fs.readFileSync('/etc/passwd', 'utf8')).toBe(realPasswd);
    // Debian's own supervisord.conf, as the package ships it, and nothing else in conf.d.
    expect(await host.readFile('/etc/supervisor/supervisord.conf')).toBe(fs.readFileSync('/etc/supervisor/supervisord.conf', 'utf8'));
    expect((await host.check(['ls', '/etc/supervisor/conf.d'])).trim()).toBe(probe);
  });

  it('shares the test\'s kept dirs both ways', async () => {
    fs.writeFileSync(path.join(shared, 'from-outside'), 'out\n');
    await host.writeFile(path.join(shared, 'from-inside'), 'in\n');
    expect(await host.readFile(path.join(shared, 'from-outside'))).toBe('out\n');
    expect(fs.readFileSync(path.join(shared, 'from-inside'), 'utf8')).toBe('in\n');
  });

  it('runs a command as a user, with that user\'s ids, home and rights only', async () => {
    const ubuntu = await host.userIds('ubuntu');
    expect((await host.execAs('ubuntu', ['sh', '-c', 'echo $(id -u) $(id -g) $HOME'])).stdout).toBe(`${ubuntu.uid} ${ubuntu.gid} /home/ubuntu\n`);
    await host.writeFile('/home/ubuntu/mine', 'x', { user: 'ubuntu' });
    expect(await host.stat('/home/ubuntu/mine')).toMatchObject(ubuntu);
    await expect(host.writeFile('/etc/supervisor/conf.d/evil.conf', 'x', { user: 'ubuntu' })).rejects.toThrow(/Permission denied/);
  });

  it('has a systemctl that does for supervisor what Debian\'s supervisor.service does', async () => {
    expect(await host.exec(['systemctl', 'is-active', 'supervisor'])).toMatchObject({ stdout: 'inactive\n', exitCode: 3 });
    await host.check(['systemctl', 'start', 'supervisor']);
    expect(await host.check(['systemctl', 'is-active', 'supervisor'])).toBe('active\n');
    expect((await host.stat('/var/run/supervisor.sock')).type).toBe('socket');
    const first = await host.supervisordPid();
    await host.check(['systemctl', 'restart', 'supervisor']);
    const second = await host.supervisordPid();
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(await host.check(['supervisorctl', 'pid'])).toBe(`${second}\n`);
    await host.check(['systemctl', 'daemon-reload']);
    expect(await host.standInCalls('systemctl')).toEqual(['is-active supervisor', 'start supervisor', 'is-active supervisor', 'restart supervisor', 'daemon-reload']);
    // As systemd does, in the service's own cgroup: here under this host's, which no other host shares.
    expect(host.cgroup).toMatch(/\/unithost-\d+-\d+$/);
    expect(await host.readFile(`/proc/${second}/cgroup`)).toMatch(new RegExp(`^0::${(host.cgroup as string).replace(/^.*?(\/unithost-)/, '.*$1')}/supervisor\\.service$`, 'm'));
  });

  it('ends every process in it when stopped', async () => {
    // supervisord daemonized, so the namespace's init adopted it.
    const children = fs.readFileSync(`/proc/${host.initPid}/task/${host.initPid}/children`, 'utf8').trim().split(' ').map(Number);
    expect(children.length).toBeGreaterThan(0);
    await host.stop();
    await eventually(() => [host.initPid, ...children].every((pid) => !fs.existsSync(`/proc/${pid}`)), 'every process of the host gone', 5000);
    // Its cgroup goes with it.
    expect(fs.existsSync(host.cgroup as string)).toBe(false);
  });
});
