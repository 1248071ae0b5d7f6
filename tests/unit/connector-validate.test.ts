/** The connector's boundary checks and the ssh command line it builds, without processes. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCommandLine } from '../../src/connector/cli';
import { deviceConfigSchema } from '../../src/connector/config';
import { resolveKeys } from '../../src/connector/phases';
import { sshArgs, sshConfigText } from '../../src/connector/ssh';
import { isSshHost, isSshUser } from '../../src/connector/validate';
import { quoted } from '../../src/common/text';
import { tempDir } from '../helpers/tmp';

describe('ssh user names', () => {
  it.each(['ubuntu', 'root', 'test_user', '_svc', 'a.b-c', 'U1', 'x'.repeat(32)])('accepts %j', (user) => expect(isSshUser(user)).toBe(true));
  it.each(['', '-oProxyCommand=id', '-l', '1abc', 'a b', 'a\nb', 'user@host', 'a;id', '$(id)', 'x'.repeat(33), 'ünïcode'])('refuses %j', (user) =>
    expect(isSshUser(user)).toBe(false),
  );
});

describe('ssh hosts', () => {
  it.each(['127.0.0.1', '10.0.0.9', '::1', 'fe80::1%eth0', '2001:db8::2', '::ffff:10.1.2.3', 'dut-101', 'dut_101', 'device.lab.example.com', 'device.lab.example.com.', `${'a'.repeat(63)}.example`])(
    'accepts %j',
    (host) => expect(isSshHost(host)).toBe(true),
  );
  it.each(['', '-oProxyCommand=id', '[::1]', '::1]', 'user@host', 'a b', 'host\nx', 'host;id', '-dut', 'dut-', '.host', 'a..b', 'fe80::1%', 'fe80::1%a%b', `${'a'.repeat(64)}.example`, `${'a.'.repeat(127)}ab`])(
    'refuses %j',
    (host) => expect(isSshHost(host)).toBe(false),
  );
});

describe('quoted (the one quoting of untrusted text, shared with the charm)', () => {
  it('keeps untrusted text on one line, quoted and clipped', () => {
    expect(quoted('a\nb"c')).toBe('"a\\nb\\"c"');
    expect(quoted('x'.repeat(200))).toBe(`"${'x'.repeat(120)}…"`);
    expect(quoted('x'.repeat(200), 80)).toBe(`"${'x'.repeat(80)}…"`);
    expect(quoted({ a: '\n' })).toBe('{"a":"\\n"}');
  });
});

describe('sshArgs', () => {
  const device = (extra: Record<string, unknown> = {}) => deviceConfigSchema.parse({ device_ip: 'dut-101', test_username: 'ubuntu', ...extra });
  const noHome = { HOME: tempDir('nohome') };
  const args = (extra: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = noHome) => sshArgs(device(extra), device().test_username, '/run/cfg', env);

  it('gives the user with -l and the host after --, last, so neither can be an option', () => {
    expect(args().slice(-4)).toEqual(['-l', 'ubuntu', '--', 'dut-101']);
    expect(args().filter((a) => a.includes('@'))).toEqual([]);
  });

  it('passes no port unless the device config sets one', () => {
    expect(args()).not.toContain('-p');
    const withPort = args({ ssh_port: 2222 });
    expect(withPort[withPort.indexOf('-p') + 1]).toBe('2222');
  });

  it('forces only BatchMode on the command line; the rest comes from the config file', () => {
    expect(args()).toEqual(['-F', '/run/cfg', '-o', 'BatchMode=yes', '-l', 'ubuntu', '--', 'dut-101']);
  });

  it("names the key in $HOME when it is there (ssh itself would read the passwd home's)", () => {
    const home = tempDir('home');
    fs.mkdirSync(path.join(home, '.ssh'));
    fs.writeFileSync(path.join(home, '.ssh', 'id_rsa'), '');
    expect(args({}, { HOME: home }).join(' ')).toContain(`-i ${home}/.ssh/id_rsa -l ubuntu -- dut-101`);
  });
});

describe('sshConfigText', () => {
  it("includes the operator's $HOME/.ssh/config before our defaults, so the operator's settings win", () => {
    const home = tempDir('home');
    fs.mkdirSync(path.join(home, '.ssh'));
    fs.writeFileSync(path.join(home, '.ssh', 'config'), 'ConnectTimeout 30\n');
    const text = sshConfigText({ HOME: home });
    expect(text.indexOf(`Include "${home}/.ssh/config"`)).toBe(0);
    expect(text).toMatch(/^Host \*\n(  \S+ \S+\n)+$/m);
    expect(text).toContain('  ConnectTimeout 10\n');
  });

  it('is our defaults alone when there is no operator config', () => {
    expect(sshConfigText({ HOME: tempDir('nohome') })).toBe('Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  ConnectTimeout 10\n  LogLevel ERROR\n');
  });
});

describe('parseCommandLine', () => {
  const run = (argv: string[]) => {
    const command = parseCommandLine(argv);
    return command.help ? 'help' : { type: command.type.name, phase: command.phase, configFile: command.configFile, jobFile: command.jobFile };
  };

  it.each([
    [['noprovision', 'runtest', '-c', 'd.yaml', 'j.json'], { type: 'noprovision', phase: 'test', configFile: 'd.yaml', jobFile: 'j.json' }],
    [['fake_connector', 'provision', '--co=d.yaml', 'j.json'], { type: 'fake', phase: 'provision', configFile: 'd.yaml', jobFile: 'j.json' }],
    [['fake', 'setup', 'j.json', '-cd.yaml'], { type: 'fake', phase: 'setup', configFile: 'd.yaml', jobFile: 'j.json' }],
    [['-c', 'd.yaml', '--', 'fake', 'cleanup', '-j.json'], { type: 'fake', phase: 'cleanup', configFile: 'd.yaml', jobFile: '-j.json' }],
    [['fake', '--he'], 'help'],
  ])('%j', (argv, expected) => expect(run(argv)).toEqual(expected));

  it.each([
    [['fake', 'test', '-c'], '-c/--config needs the device config file'],
    [['fake', 'test', '-c', '--help'], '-c/--config needs the device config file'],
    [['fake', 'test', '-x', 'j.json'], 'unknown option "-x"'],
    [['fake', 'test', '--help=yes'], 'unknown option "--help=yes"'],
    [['fake', 'test', '-c', 'd.yaml', 'j.json', 'extra'], 'unexpected argument "extra"'],
    [['fake', 'Test', '-c', 'd.yaml', 'j.json'], 'unknown phase "Test"'],
    [[], 'missing device type'],
    [['fake'], 'missing phase'],
  ])('refuses %j', (argv, message) => expect(() => parseCommandLine(argv)).toThrow(message));
});

describe('resolveKeys', () => {
  it('refuses ids and keys it cannot use as they are, before fetching anything', async () => {
    process.env['TESTFLINGER_LP_KEYS_URL'] = 'http://127.0.0.1:9';
    const printed: string[] = [];
    const keys = await resolveKeys(['lp:alice:x', 'gh:../../orgs', 'ssh-ed25519 AAAA\ncommand="id" ssh-ed25519 AAAA', 'ssh-ed25519 AAAAC3Nz test@host'], (line) => printed.push(line));
    expect(keys).toEqual(['ssh-ed25519 AAAAC3Nz test@host']);
    expect(printed).toEqual([
      'Cannot use ssh key "lp:alice:x": neither a public key nor an lp:/gh: id',
      'Cannot use ssh key "gh:../../orgs": neither a public key nor an lp:/gh: id',
      'Cannot use ssh key "ssh-ed25519 AAAA\\ncommand=\\"id\\" ssh-ed25519 AAAA": neither a public key nor an lp:/gh: id',
    ]);
  });
});
