/** The device connector as the phase scripts run it, against a real sshd on 127.0.0.1. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { repoRoot, tempDir } from '../helpers/tmp';

const CONNECTOR = path.join(repoRoot, 'dist', 'testflinger-device-connector.js');
let sshd: TestSshd;
let clientHome: string;
let clientKey: KeyPair;

beforeAll(async () => {
  clientHome = tempDir('client');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  sshd = await new TestSshd().start([clientKey.publicKey]);
});
afterAll(() => sshd.stop());

function runDir(job: Record<string, unknown>, device: Record<string, unknown> = {}): string {
  const dir = tempDir('job');
  fs.writeFileSync(path.join(dir, 'testflinger.json'), JSON.stringify({ job_id: 'j1', ...job }));
  fs.writeFileSync(path.join(dir, 'default.yaml'), stringify({ device_ip: '127.0.0.1', ssh_port: sshd.port, test_username: sshd.user, provision_ssh_wait: 2, ...device }));
  return dir;
}

function connector(dir: string, type: string, phase: string, extraEnv: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [CONNECTOR, type, phase, '-c', 'default.yaml', 'testflinger.json'], {
    cwd: dir,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome, ...extraEnv },
    encoding: 'utf8',
    timeout: 60000,
  });
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

describe('noprovision', () => {
  it('provision succeeds when the device answers over SSH, and writes device-info.json', () => {
    const dir = runDir({ provision_data: {} });
    const { code, out } = connector(dir, 'noprovision', 'provision');
    expect({ code, out }).toMatchObject({ code: 0 });
    expect(out).toMatch(new RegExp(`"${sshd.user}@127\\.0\\.0\\.1" \\(port ${sshd.port}\\) answers over SSH`));
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'device-info.json'), 'utf8'))).toEqual({ device_info: { device_ip: '127.0.0.1' } });
  });

  it('provision against a closed port fails with a clear message, exit 46 and the error file', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const dir = runDir({ provision_data: {} }, { ssh_port: port, provision_ssh_wait: 1 });
    const { code, out } = connector(dir, 'noprovision', 'provision');
    expect({ code, out }).toMatchObject({ code: 46 });
    expect(out).toMatch(new RegExp(`did not answer over SSH within 1s`));
    const error = JSON.parse(fs.readFileSync(path.join(dir, 'device-connector-error.json'), 'utf8'));
    expect(error.provision_exception_info).toMatchObject({ exception_name: 'RecoveryError', exception_message: expect.stringMatching(/"[^"]+@127\.0\.0\.1" \(port \d+\) did not answer/) });
  });
});

describe('test phase', () => {
  it('runs test_cmds with DEVICE_IP set; commands reach the device over SSH and the exit code comes back', () => {
    const ssh = `ssh -p ${sshd.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    const dir = runDir({ test_data: { test_cmds: [`echo "target is $DEVICE_IP"`, `${ssh} ${sshd.user}@$DEVICE_IP 'echo on-device; exit 7'`] } }, { env: { LAB: 'lab1' } });
    const { code, out } = connector(dir, 'noprovision', 'test');
    expect(out).toMatch(/target is 127\.0\.0\.1/);
    expect(out).toMatch(/on-device/);
    expect(code).toBe(7);
  });
});

describe('reserve', () => {
  it('installs the requested key on the device, says how to connect, and holds for the timeout', () => {
    const visitor = sshKeygen(path.join(tempDir('visitor'), 'key'));
    const dir = runDir({ reserve_data: { ssh_keys: [visitor.publicKey, 'lp:nobody'], timeout: 1 } });
    const started = Date.now();
    const { code, out } = connector(dir, 'noprovision', 'reserve', { TESTFLINGER_LP_KEYS_URL: 'http://127.0.0.1:9' });
    expect({ code }).toEqual({ code: 0 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(out).toMatch(new RegExp(`You can now connect to ${sshd.user}@127\\.0\\.0\\.1 -p ${sshd.port}`));
    expect(out).toMatch(/Cannot fetch ssh keys for "lp:nobody"/);
    const login = spawnSync('ssh', ['-p', String(sshd.port), '-i', visitor.privateKey, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', `${sshd.user}@127.0.0.1`, 'echo visitor-in'], { encoding: 'utf8' });
    expect(login.stdout).toMatch(/visitor-in/);
  });
});

describe('reserve with key ids', () => {
  it('fetches lp: keys from the key server and installs them', async () => {
    const visitor = sshKeygen(path.join(tempDir('lpvisitor'), 'key'));
    const keyServer = http.createServer((req, res) => {
      if (req.url === '/~alice/+sshkeys') res.end(`${visitor.publicKey}\n`);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => keyServer.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(keyServer.address() as net.AddressInfo).port}`;
    try {
      const dir = runDir({ reserve_data: { ssh_keys: ['lp:alice'], timeout: 1 } });
      const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [CONNECTOR, 'noprovision', 'reserve', '-c', 'default.yaml', 'testflinger.json'], {
          cwd: dir,
          env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome, TESTFLINGER_LP_KEYS_URL: url },
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('close', (code) => resolve({ code, out }));
      });
      expect(result.code).toBe(0);
      expect(result.out).not.toMatch(/Cannot fetch/);
      const login = spawnSync('ssh', ['-p', String(sshd.port), '-i', visitor.privateKey, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', `${sshd.user}@127.0.0.1`, 'echo alice-in'], { encoding: 'utf8' });
      expect(login.stdout).toMatch(/alice-in/);
    } finally {
      keyServer.close();
    }
  });
});

describe('the command line and the fake device type', () => {
  it.each([
    [['nosuch', 'test', '-c', 'default.yaml', 'testflinger.json'], /unknown device type "nosuch"/],
    [['fake', 'dance', '-c', 'default.yaml', 'testflinger.json'], /unknown phase "dance"/],
    [['fake', 'test', 'testflinger.json'], /missing -c <default.yaml>/],
  ])('refuses %j with a usage message and exit 2', (args, message) => {
    const dir = runDir({});
    const result = spawnSync(process.execPath, [CONNECTOR, ...args], { cwd: dir, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^usage: testflinger-device-connector/m);
  });

  it('names the file and key of a bad device config', () => {
    const dir = runDir({});
    fs.writeFileSync(path.join(dir, 'default.yaml'), 'ssh_port: 22\n');
    const { code, out } = connector(dir, 'fake', 'setup');
    expect(code).toBe(2);
    expect(out).toMatch(/default\.yaml: device_ip: Required/);
  });

  it.each(['setup', 'provision', 'firmware_update', 'test', 'allocate', 'cleanup'])('fake %s succeeds and says what it would do', (phase) => {
    const dir = runDir({ provision_data: { distro: 'noble' }, test_data: { test_cmds: 'echo fake-test-ran' } }, { device_ip: '10.0.0.9' });
    const { code, out } = connector(dir, 'fake', phase);
    expect(code).toBe(0);
    if (phase === 'provision') expect(out).toMatch(/would provision "noble"/);
    if (phase === 'test') expect(out).toMatch(/fake-test-ran/);
  });

  it('noprovision runs the shared firmware_update (upstream: every type has it): a bad firmware_update_data fails it, with the error file', () => {
    const dir = runDir({ firmware_update_data: { version: 'latest', ignore_failure: 'yes' } });
    const { code, out } = connector(dir, 'noprovision', 'firmware_update');
    expect(code).toBe(1);
    expect(out).toMatch(/bad firmware_update_data: testflinger.json: firmware_update_data.ignore_failure: Expected boolean/);
    expect(fs.existsSync(path.join(dir, 'device-connector-error.json'))).toBe(true);
  });
});
