/**
 * The device connector against hostile jobs, operators' ssh configs and upstream's command line,
 * run as the phase scripts run it, with a real sshd on 127.0.0.1.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { sshKeygen, TestSshd } from '../helpers/sshd';
import { repoRoot, tempDir } from '../helpers/tmp';
import { supportedDeviceTypeNames, UPSTREAM_ONLY_DEVICE_TYPES } from '../../src/connector/devices';

const CONNECTOR = path.join(repoRoot, 'dist', 'testflinger-device-connector.js');
let sshd: TestSshd;
/** A client home with the key sshd accepts and no ssh config. */
let plainHome: string;

function clientHome(sshConfig?: string): string {
  const home = tempDir('client');
  const key = sshKeygen(path.join(home, '.ssh', 'id_rsa'));
  fs.appendFileSync(path.join(sshd.deviceHome, '.ssh', 'authorized_keys'), `${key.publicKey}\n`);
  if (sshConfig !== undefined) fs.writeFileSync(path.join(home, '.ssh', 'config'), sshConfig, { mode: 0o600 });
  return home;
}

beforeAll(async () => {
  sshd = await new TestSshd().start([]);
  plainHome = clientHome();
});
afterAll(() => sshd.stop());

/** A run dir with the job and a device config that reaches the test sshd (its port given unless `device` says otherwise). */
function runDir(job: Record<string, unknown>, device: Record<string, unknown> = {}): string {
  const dir = tempDir('job');
  fs.writeFileSync(path.join(dir, 'testflinger.json'), JSON.stringify({ job_id: 'j1', ...job }));
  const config = { device_ip: '127.0.0.1', ssh_port: sshd.port, test_username: sshd.user, provision_ssh_wait: 2, ...device };
  fs.writeFileSync(path.join(dir, 'default.yaml'), stringify(Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined))));
  return dir;
}

function connector(dir: string, args: string[], home = plainHome) {
  const result = spawnSync(process.execPath, [CONNECTOR, ...args], {
    cwd: dir,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home },
    encoding: 'utf8',
    timeout: 30000,
  });
  return { code: result.status, out: result.stdout, err: result.stderr, all: `${result.stdout}${result.stderr}` };
}

function phase(dir: string, type: string, stage: string, home?: string) {
  return connector(dir, [type, stage, '-c', 'default.yaml', 'testflinger.json'], home);
}

function errorFile(dir: string): Record<string, { exception_name: string; exception_message: string }> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'device-connector-error.json'), 'utf8'));
}

/** An ssh option that, if ssh ever reads it as one, leaves a file behind. */
function proxyCommandInjection(): { value: string; marker: string } {
  const marker = path.join(tempDir('pwned'), 'ran');
  return { value: `-oProxyCommand=touch ${marker} #`, marker };
}

describe('a job test_username never reaches ssh as an option', () => {
  it.each(['provision', 'reserve'])('%s: a test_username of -oProxyCommand=... runs nothing, fails the job (exit 1, JobError) and keeps the device online (not 46)', (stage) => {
    const { value, marker } = proxyCommandInjection();
    const visitor = sshKeygen(path.join(tempDir('visitor'), 'key'));
    const dir = runDir({ provision_data: {}, test_data: { test_username: value }, reserve_data: { ssh_keys: [visitor.publicKey], timeout: 1 } });
    const { code, all } = phase(dir, 'noprovision', stage);
    expect(fs.existsSync(marker)).toBe(false);
    expect({ code }).toEqual({ code: 1 });
    expect(all).toContain(`test_data.test_username: ${JSON.stringify(value)} is not a user name`);
    expect(errorFile(dir)[`${stage}_exception_info`]).toMatchObject({ exception_name: 'JobError' });
  });

  it('a valid test_username from the job is the one ssh logs in as', () => {
    const dir = runDir({ provision_data: {}, test_data: { test_username: sshd.user } }, { test_username: 'nobody_else' });
    const { code, all } = phase(dir, 'noprovision', 'provision');
    expect({ code, all }).toMatchObject({ code: 0 });
    expect(all).toContain(`"${sshd.user}@127.0.0.1" (port ${sshd.port}) answers over SSH`);
  });
});

describe('device config values that reach ssh are checked too: a usage error naming the file and key, exit 2', () => {
  it.each(['test_username', 'device_ip'])('%s of -oProxyCommand=...', (key) => {
    const { value, marker } = proxyCommandInjection();
    const dir = runDir({ provision_data: {} }, { [key]: value });
    const { code, err } = phase(dir, 'noprovision', 'provision');
    expect(fs.existsSync(marker)).toBe(false);
    expect({ code }).toEqual({ code: 2 });
    expect(err).toContain(`default.yaml: ${key}: ${JSON.stringify(value)} is not a`);
  });

  it('ssh_port out of range', () => {
    const dir = runDir({}, { ssh_port: 70000 });
    const { code, err } = phase(dir, 'noprovision', 'provision');
    expect({ code }).toEqual({ code: 2 });
    expect(err).toMatch(/default\.yaml: ssh_port: Number must be less than or equal to 65535/);
  });

  it('an env name that would corrupt the environment', () => {
    const dir = runDir({ test_data: { test_cmds: 'true' } }, { env: { 'A=B': 'x' } });
    const { code, err } = phase(dir, 'noprovision', 'test');
    expect({ code }).toEqual({ code: 2 });
    expect(err).toContain('default.yaml: env."A=B": "A=B" is not an environment variable name');
  });
});

describe("the operator's ssh config decides the port unless the device config names one", () => {
  it('provision reaches an sshd whose port is named only in $HOME/.ssh/config', () => {
    const home = clientHome(sshd.clientConfigBlock('127.0.0.1'));
    const dir = runDir({ provision_data: {} }, { ssh_port: undefined });
    const { code, all } = phase(dir, 'noprovision', 'provision', home);
    expect({ code, all }).toMatchObject({ code: 0 });
    expect(all).toContain(`"${sshd.user}@127.0.0.1" answers over SSH`);
  });

  it('a Host alias with its own HostName and Port works as device_ip', () => {
    const home = clientHome(sshd.clientConfigBlock('dut-101'));
    const dir = runDir({ provision_data: {} }, { device_ip: 'dut-101', ssh_port: undefined });
    const { code, all } = phase(dir, 'noprovision', 'provision', home);
    expect({ code, all }).toMatchObject({ code: 0 });
    expect(all).toContain(`"${sshd.user}@dut-101" answers over SSH`);
  });

  it('reserve installs keys over the same route and prints no port it was not given', () => {
    const home = clientHome(sshd.clientConfigBlock('127.0.0.1'));
    const visitor = sshKeygen(path.join(tempDir('visitor'), 'key'));
    const dir = runDir({ reserve_data: { ssh_keys: [visitor.publicKey], timeout: 1 } }, { ssh_port: undefined });
    const { code, all } = phase(dir, 'noprovision', 'reserve', home);
    expect({ code, all }).toMatchObject({ code: 0 });
    expect(all).toContain(`You can now connect to ${sshd.user}@127.0.0.1 (ssh ${sshd.user}@127.0.0.1)`);
    expect(fs.readFileSync(path.join(sshd.deviceHome, '.ssh', 'authorized_keys'), 'utf8')).toContain(visitor.publicKey);
  });

  it("other settings of the ssh config hold too: the operator's known_hosts file and host key policy", () => {
    const home = tempDir('client');
    const knownHosts = path.join(home, 'known_hosts');
    const configured = clientHome(`${sshd.clientConfigBlock('127.0.0.1')}  UserKnownHostsFile ${knownHosts}\n  StrictHostKeyChecking accept-new\n`);
    const dir = runDir({ provision_data: {} }, { ssh_port: undefined });
    const { code, all } = phase(dir, 'noprovision', 'provision', configured);
    expect({ code, all }).toMatchObject({ code: 0 });
    expect(fs.readFileSync(knownHosts, 'utf8')).toMatch(/ssh-ed25519 /);
  });

  it("a port in the device config wins over the ssh config's", () => {
    const home = clientHome('Host 127.0.0.1\n  Port 9\n');
    const dir = runDir({ provision_data: {} });
    const { code, all } = phase(dir, 'noprovision', 'provision', home);
    expect({ code, all }).toMatchObject({ code: 0 });
  });
});

describe('untrusted text in messages is quoted, never raw with newlines', () => {
  const injected = 'x\nFAKE: injected line';
  const hasInjectedLine = (text: string) => text.split('\n').some((line) => line.startsWith('FAKE:'));

  it.each([
    ['a job test_username', { test_data: { test_username: injected } }, 'noprovision', 'provision'],
    ['a provision_data distro', { provision_data: { distro: injected } }, 'fake', 'provision'],
    ['a firmware version', { firmware_update_data: { version: injected } }, 'fake', 'firmware_update'],
    ['a reserve ssh key id', { reserve_data: { ssh_keys: [injected], timeout: 1 } }, 'noprovision', 'reserve'],
    ['a reserve lp: id', { reserve_data: { ssh_keys: [`lp:${injected}`], timeout: 1 } }, 'noprovision', 'reserve'],
  ])('%s', (_what, job, type, stage) => {
    const dir = runDir(job);
    const { all } = phase(dir, type, stage);
    expect(hasInjectedLine(all)).toBe(false);
    expect(all).toContain(JSON.stringify(injected).slice(1, -1));
  });

  it('a device type and an option on the command line', () => {
    const dir = runDir({});
    for (const args of [[injected, 'provision', '-c', 'default.yaml', 'testflinger.json'], ['fake', 'provision', `--${injected}`, '-c', 'default.yaml', 'testflinger.json']]) {
      const { code, err } = connector(dir, args);
      expect({ code, injected: hasInjectedLine(err) }).toEqual({ code: 2, injected: false });
      expect(err).toContain(JSON.stringify(injected).slice(1, -1));
    }
  });
});

describe("upstream's command line", () => {
  /** Upstream's stages (its cmd.py STAGES) and the device types of its DEVICE_CONNECTORS, plus names it had before a rename. */
  const UPSTREAM_STAGES = ['provision', 'firmware_update', 'runtest', 'allocate', 'reserve', 'cleanup'];
  const UPSTREAM_TYPES = ['cm3', 'dell_oemscript', 'dragonboard', 'fake_connector', 'hp_oemscript', 'lenovo_oemscript', 'oem_autoinstall', 'maas2', 'multi', 'muxpi', 'netboot', 'noprovision', 'oemrecovery', 'oemscript', 'control_host_iot', 'control_host_kvm'];
  const SUPPORTED = `supported: ${supportedDeviceTypeNames().join(', ')}`;

  it('runtest is the test stage: test_cmds run and their exit code comes back', () => {
    const dir = runDir({ test_data: { test_cmds: ['echo "runtest on $DEVICE_IP"', 'exit 3'] } });
    const { code, all } = phase(dir, 'noprovision', 'runtest');
    expect(all).toContain('runtest on 127.0.0.1');
    expect(code).toBe(3);
  });

  it.each(UPSTREAM_STAGES)('fake_connector (upstream name of fake) takes stage %s', (stage) => {
    const dir = runDir({ provision_data: { distro: 'noble' }, test_data: { test_cmds: 'echo ran' }, reserve_data: { timeout: 1 } }, { device_ip: '10.0.0.9' });
    const { code, all } = phase(dir, 'fake_connector', stage);
    expect({ code, all }).toMatchObject({ code: 0 });
  });

  it.each([
    [['--config', 'default.yaml', 'testflinger.json']],
    [['--config=default.yaml', 'testflinger.json']],
    [['-cdefault.yaml', 'testflinger.json']],
    [['--conf', 'default.yaml', 'testflinger.json']],
    [['testflinger.json', '-c', 'default.yaml']],
    [['-c', 'default.yaml', '--', 'testflinger.json']],
  ])('takes the config flag as argparse does: fake setup %j', (rest) => {
    const dir = runDir({});
    const { code, all } = connector(dir, ['fake', 'setup', ...rest]);
    expect({ code, all }).toMatchObject({ code: 0 });
    expect(all).toMatch(/ready for setup/);
  });

  it.each([[['-h']], [['--help']], [['noprovision', 'runtest', '--help']]])('%j prints the usage and exits 0', (args) => {
    const { code, out } = connector(tempDir('help'), args);
    expect(code).toBe(0);
    expect(out).toMatch(/^usage: testflinger-device-connector/);
    expect(out).toMatch(/runtest/);
  });

  it('refuses an option upstream does not take, naming the ones it does', () => {
    const dir = runDir({});
    const { code, err } = connector(dir, ['fake', 'setup', '--verbose', '-c', 'default.yaml', 'testflinger.json']);
    expect(code).toBe(2);
    expect(err).toContain('unknown option "--verbose"; upstream\'s connector takes only -c/--config and -h/--help');
  });

  it("knows every type of upstream's, and refuses by name (exit 2, no stack trace) each it does not implement yet", () => {
    const notYet = UPSTREAM_TYPES.filter((t) => !supportedDeviceTypeNames().includes(t));
    expect([...notYet].sort()).toEqual([...UPSTREAM_ONLY_DEVICE_TYPES].sort());
    for (const type of notYet) {
      const dir = runDir({});
      const { code, err } = phase(dir, type, 'provision');
      expect(code).toBe(2);
      expect(err).toContain(`device type ${type} is not supported by this connector yet; ${SUPPORTED}`);
      expect(err).not.toMatch(/^\s+at /m);
    }
  });

  it.each([['zapper_kvm', 'control_host_kvm'], ['zapper_iot', 'control_host_iot']])("refuses %s as upstream's former name of %s", (type, now) => {
    const { code, err } = phase(runDir({}), type, 'provision');
    expect(code).toBe(2);
    expect(err).toContain(`device type ${type} is upstream's former name of ${now}; use ${now}`);
  });

  it('refuses a name upstream does not know either, differently', () => {
    const { code, err } = phase(runDir({}), 'maas3', 'provision');
    expect(code).toBe(2);
    expect(err).toContain(`unknown device type "maas3" (not a type of this connector or of upstream's); ${SUPPORTED}`);
    expect(err).not.toMatch(/^\s+at /m);
  });
});
