/** The connector's boundary checks and the ssh command line it builds, without processes. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCommandLine } from '../../src/connector/cli';
import { deviceConfigSchema } from '../../src/connector/config';
import { sshArgs } from '../../src/connector/ssh';
import { isSshHost, isSshUser, quote } from '../../src/connector/validate';
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

describe('quote', () => {
  it('keeps untrusted text on one line, quoted and clipped', () => {
    expect(quote('a\nb"c')).toBe('"a\\nb\\"c"');
    expect(quote('x'.repeat(200))).toBe(`"${'x'.repeat(80)}..."`);
    expect(quote({ a: '\n' })).toBe('{"a":"\\n"}');
  });
});

describe('sshArgs', () => {
  const device = (extra: Record<string, unknown> = {}) => deviceConfigSchema.parse({ device_ip: 'dut-101', test_username: 'ubuntu', ...extra });
  const noHome = { HOME: tempDir('nohome') };

  it('gives the user with -l and the host after --, last, so neither can be an option', () => {
    const args = sshArgs(device(), device().test_username, noHome);
    expect(args.slice(-4)).toEqual(['-l', 'ubuntu', '--', 'dut-101']);
    expect(args.filter((a) => a.includes('@'))).toEqual([]);
  });

  it('passes no port unless the device config sets one', () => {
    expect(sshArgs(device(), device().test_username, noHome)).not.toContain('-p');
    const args = sshArgs(device({ ssh_port: 2222 }), device().test_username, noHome);
    expect(args[args.indexOf('-p') + 1]).toBe('2222');
  });

  it("names the key and config in $HOME when they are there (ssh itself would read the passwd home's)", () => {
    const home = tempDir('home');
    fs.mkdirSync(path.join(home, '.ssh'));
    fs.writeFileSync(path.join(home, '.ssh', 'id_rsa'), '');
    fs.writeFileSync(path.join(home, '.ssh', 'config'), '');
    const args = sshArgs(device(), device().test_username, { HOME: home });
    expect(args.join(' ')).toContain(`-i ${home}/.ssh/id_rsa -F ${home}/.ssh/config -l ubuntu -- dut-101`);
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
