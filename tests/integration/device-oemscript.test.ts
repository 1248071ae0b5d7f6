/**
 * The OEM script family through the phase scripts. The device is a stand-in: a real sshd on
 * 127.0.0.1 whose sessions find stand-in `sudo`, `reboot`, `dell-restore-system` and
 * `systemctl` first on PATH. It "reboots" by restarting its sshd on the same port, and a
 * restore replaces the test user's home (keeping only the key the recovery media carried).
 * The image comes from a local HTTP server.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageServer } from '../helpers/image-server';
import { agentWithJob, errorFile, runPhase, type PhaseRun } from '../helpers/phase-script';
import { passwordUser, passwordUserUnavailable, type PasswordUser } from '../helpers/password-user';
import { serialConsole } from '../helpers/serial-console';
import { sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let clientHome: string;
let clientKey: KeyPair;
let images: ImageServer;
let imageBase: string;
/** The recovery images the lab serves (anything else is not found). */
const ISOS = ['somerville-jammy-oem-X42.iso', 'hp-noble-oem.iso', 'lenovo-noble-oem.iso', 'stella-jammy-oem.iso', 'dell-bto-jammy.iso', 'somerville.iso', 'somerville-noble.iso', 'x.iso'];

beforeAll(async () => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  images = await ImageServer.serving(Object.fromEntries(ISOS.map((iso) => [`images/${iso}`, `ISO image /images/${iso}\n`])));
  imageBase = images.url('images');
});

/** What the stand-in does when told to restore: replace the system, or (a broken restore) just reboot. */
type RestoreBehaviour = 'reinstall' | 'reboot-only';

class StandInDevice {
  readonly dir = tempDir('standin');
  readonly bin = path.join(this.dir, 'bin');
  readonly sudoLog = path.join(this.dir, 'sudo.log');
  readonly requests = path.join(this.dir, 'requests');
  readonly installer = path.join(this.dir, 'ubiquity');
  readonly powerCycle = path.join(this.dir, 'power-cycle');
  readonly events: string[] = [];
  private handled = 0;
  private busy = false;
  private timer: NodeJS.Timeout | undefined;

  readonly sshd = new TestSshd();

  /** `passwordLogin`: the device's user is that one, let in by password, instead of the test's own. */
  constructor(
    private readonly restore: RestoreBehaviour = 'reinstall',
    private readonly passwordLogin?: PasswordUser,
    private readonly authorized: string[] = [clientKey.publicKey],
  ) {
    fs.mkdirSync(this.bin);
    const script = (name: string, body: string) => fs.writeFileSync(path.join(this.bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    // sudo records every privileged command and runs none of them, except the detached
    // `sh -c 'sleep 2; reboot'` (run, so it finds the stand-in reboot) and lsblk (a canned disk).
    script(
      'sudo',
      `echo "sudo $*" >> ${this.sudoLog}
case "$1" in
  lsblk) printf '/dev/nvme0n1 \\n/dev/nvme0n1p1 c12a7328-f81f-11d2-ba4b-00a0c93ec93b\\n/dev/nvme0n1p2 ebd0a0a2-b9e5-4433-87c0-68b6b72699c7\\n' ;;
  tee) sed 's/^/  tee< /' >> ${this.sudoLog} ;;
  sh) exec "$@" ;;
esac
exit 0`,
    );
    script('reboot', `echo reboot >> ${this.requests}`);
    script('dell-restore-system', `echo "dell-restore-system $*" >> ${this.requests}`);
    script('systemctl', `[ "$*" = "is-active ubiquity" ] && cat ${this.installer} 2>/dev/null || echo inactive`);
    this.passwordLogin?.own(this.dir);
  }

  async start(up = true): Promise<this> {
    await this.sshd.start(this.authorized, { sessionPath: this.bin, ...(this.passwordLogin ? { passwordLoginUser: this.passwordLogin.name } : {}) });
    if (!up) await this.sshd.stopAndWait();
    this.timer = setInterval(() => void this.tick(), 100);
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sshd.stopAndWait();
  }

  sudoCalls(): string[] {
    return fs.existsSync(this.sudoLog) ? fs.readFileSync(this.sudoLog, 'utf8').trimEnd().split('\n') : [];
  }

  get home(): string {
    return this.sshd.deviceHome;
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (fs.existsSync(this.powerCycle)) {
        fs.rmSync(this.powerCycle);
        this.events.push('power cycle');
        await this.sshd.restart(500);
      }
      const lines = fs.existsSync(this.requests) ? fs.readFileSync(this.requests, 'utf8').trimEnd().split('\n') : [];
      for (const request of lines.slice(this.handled)) {
        this.handled++;
        // ubiquity-recovery restores on the reboot that follows update-grub.
        const restoring = request.startsWith('dell-restore-system') || this.sudoCalls().includes('sudo update-grub');
        if (restoring && this.restore === 'reinstall') await this.reinstall();
        else await this.reboot();
      }
    } finally {
      this.busy = false;
    }
  }

  private async reboot(): Promise<void> {
    this.events.push('reboot');
    await this.sshd.restart(1500);
  }

  /** The new system: a fresh home that lets in the key the recovery media carried; its installer runs a while. */
  private async reinstall(): Promise<void> {
    this.events.push('restore');
    await this.sshd.stopAndWait();
    const stagedKey = fs.readFileSync(path.join(this.home, 'testflinger-recovery', 'authorized_keys'), 'utf8');
    fs.rmSync(this.home, { recursive: true, force: true });
    fs.mkdirSync(path.join(this.home, '.ssh'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(this.home, '.ssh', 'authorized_keys'), stagedKey, { mode: 0o600 });
    this.passwordLogin?.own(this.home);
    fs.writeFileSync(this.installer, 'active\n');
    this.sudoLogRotate();
    await new Promise((r) => setTimeout(r, 1000));
    await this.sshd.restart();
    setTimeout(() => fs.writeFileSync(this.installer, 'inactive\n'), 1500);
  }

  /** A restored system has run no update-grub yet. */
  private sudoLogRotate(): void {
    if (fs.existsSync(this.sudoLog)) fs.renameSync(this.sudoLog, `${this.sudoLog}.before-restore`);
  }

  callsBeforeRestore(): string[] {
    const file = `${this.sudoLog}.before-restore`;
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trimEnd().split('\n') : [];
  }
}

const devices: StandInDevice[] = [];
const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const device of devices) await device.stop();
  for (const stop of stops) await stop();
});

async function standIn(restore: RestoreBehaviour = 'reinstall', up = true): Promise<StandInDevice> {
  const device = await new StandInDevice(restore).start(up);
  devices.push(device);
  return device;
}

function oemJob(device: StandInDevice, provisionData: Record<string, unknown>, extra: Record<string, unknown> = {}, job: Record<string, unknown> = {}) {
  return agentWithJob(
    {
      device_ip: '127.0.0.1',
      ssh_port: device.sshd.port,
      agent_name: 'oem-1',
      test_username: os.userInfo().username,
      oem_poll_seconds: 0.3,
      oem_shutdown_wait_seconds: 15,
      oem_boot_wait_seconds: 20,
      ...extra,
    },
    { provision_data: provisionData, ...job },
  );
}

const env = () => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome });

describe('oemscript', () => {
  it('reboots the device, puts the image on its recovery partition, restores, waits for the installer, and checks the new system; test runs on it, its serial console logged (as upstream, only then)', async () => {
    const device = await standIn();
    const url = `${imageBase}/somerville-jammy-oem-X42.iso`;
    const consoleServer = await serialConsole('Ubuntu 22.04 LTS somerville ttyS0\r\n');
    stops.push(consoleServer.close);
    const dirs = oemJob(device, { url }, { serial_host: '127.0.0.1', serial_port: consoleServer.port });
    const run = await runPhase(dirs, 'oemscript', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(device.events).toEqual(['reboot', 'restore']);
    expect(images.requests).toContain('/images/somerville-jammy-oem-X42.iso');
    const calls = device.callsBeforeRestore();
    expect(calls).toEqual(
      expect.arrayContaining([
        `sudo mount -o loop,ro ${device.home}/testflinger-recovery/image.iso /mnt`,
        'sudo mount /dev/nvme0n1p2 /cdrom',
        'sudo rsync -a --delete --exclude=efi /mnt/ /cdrom/',
        'sudo cp testflinger-recovery/authorized_keys /cdrom/testflinger/authorized_keys',
        'sudo sh -c sleep 2; dell-restore-system -y',
      ]),
    );
    expect(calls).not.toContain('sudo update-grub');
    expect(run.out).toMatch(/device: downloading http:\/\/127\.0\.0\.1:\d+\/images\/somerville-jammy-oem-X42\.iso/);
    expect(run.out).toMatch(/runs the restored image/);
    expect(fs.readFileSync(device.installer, 'utf8').trim()).toBe('inactive');

    const ssh = `ssh -p ${device.sshd.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    fs.writeFileSync(path.join(dirs.runDir, 'testflinger.json'), JSON.stringify({ job_id: 'job-1', test_data: { test_cmds: [`${ssh} $(id -un)@$DEVICE_IP 'ls -A; echo restored-device-says-hi'`] } }));
    const tested = await runPhase(dirs, 'oemscript', 'test', env());
    expect(tested).toMatchObject({ code: 0 });
    expect(tested.out).toMatch(/restored-device-says-hi/);
    expect(tested.out).not.toMatch(/testflinger-old-system|testflinger-recovery/);
    expect(fs.readFileSync(path.join(dirs.runDir, 'test-serial.log'), 'utf8')).toBe('Ubuntu 22.04 LTS somerville ttyS0\r\n');
    expect(fs.existsSync(path.join(dirs.runDir, 'provision-serial.log'))).toBe(false);
  });

  it.each([
    ['hp_oemscript', 'hp-noble-oem.iso'],
    ['lenovo_oemscript', 'lenovo-noble-oem.iso'],
    ['oemscript', 'stella-jammy-oem.iso'],
  ])('%s restores %s through the ubuntu-recovery GRUB entry', async (type, image) => {
    const device = await standIn();
    const run = await runPhase(oemJob(device, { url: `${imageBase}/${image}` }), type, 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    const calls = device.callsBeforeRestore();
    expect(calls).toEqual(expect.arrayContaining(['sudo tee /etc/default/grub.d/automatic-oem-config.cfg', '  tee< GRUB_DEFAULT="ubuntu-recovery restore"', 'sudo update-grub', 'sudo sh -c sleep 2; reboot']));
    expect(calls.some((c) => c.includes('dell-restore-system'))).toBe(false);
  });

  it('dell_oemscript restores with dell-restore-system', async () => {
    const device = await standIn();
    const run = await runPhase(oemJob(device, { url: `${imageBase}/dell-bto-jammy.iso` }), 'dell_oemscript', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(device.callsBeforeRestore()).toContain('sudo sh -c sleep 2; dell-restore-system -y');
  });

  it('a device that comes back with its old system fails the job: the image was not installed', async () => {
    const device = await standIn('reboot-only');
    const dirs = oemJob(device, { url: `${imageBase}/somerville.iso` });
    const run = await runPhase(dirs, 'oemscript', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/came back with the system it had before the restore/);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError' });
  });

  it('an image the device cannot download fails the recovery script, with the downloader\'s reason', async () => {
    const device = await standIn();
    const run = await runPhase(oemJob(device, { url: `${imageBase}/missing.img` }), 'oemscript', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/device: curl: \(22\) The requested URL returned error: 404/);
    expect(run.out).toMatch(/the recovery script failed on .* \(exit 22\)/);
    expect(device.events).toEqual(['reboot']);
  });
});

describe('oemscript with an unreachable device', () => {
  it('runs reboot_script (a power cycle) and carries on once the device answers', async () => {
    const device = await standIn('reinstall', false);
    const run = await runPhase(oemJob(device, { url: `${imageBase}/x.iso` }, { reboot_script: [`touch ${device.powerCycle}`] }), 'oemscript', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(device.events).toEqual(['power cycle', 'restore']);
  });

  it('is a recovery failure (exit 46) when reboot_script fails', async () => {
    const device = await standIn('reinstall', false);
    const dirs = oemJob(device, { url: `${imageBase}/x.iso` }, { reboot_script: ['false'] });
    const run = await runPhase(dirs, 'oemscript', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: expect.stringMatching(/reboot_script command "false" failed/) });
  });

  it('is a recovery failure (exit 46) when there is no reboot_script', async () => {
    const device = await standIn('reinstall', false);
    const run = await runPhase(oemJob(device, { url: `${imageBase}/x.iso` }), 'oemscript', 'provision', env());
    expect(run.code).toBe(46);
    expect(run.out).toMatch(/does not answer and the device config has no reboot_script/);
  });
});

describe('oemscript job data', () => {
  it.each([
    [{}, /provision_data\.url: Required/],
    [{ url: 'file:///etc/shadow' }, /provision_data\.url: "file:\/\/\/etc\/shadow" is not an http\(s\) URL/],
    [{ url: 'http://host/a b.iso' }, /provision_data\.url: "http:\/\/host\/a b.iso" is not an http\(s\) URL/],
    [{ url: "http://host/$(reboot)'.iso" }, /is not an http\(s\) URL/],
  ])('refuses provision_data %j before touching the device (exit 1)', async (data, message) => {
    const device = await standIn();
    const run: PhaseRun = await runPhase(oemJob(device, data), 'oemscript', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(message);
    expect(device.events).toEqual([]);
  });
});

describe.each(passwordUserUnavailable() ? [] : ['password'])('oemscript with a device that takes the job\'s %s (sshpass)', () => {
  /** A device whose test user is a real one with a password, refusing every key at first; sshpass is recorded on its way. */
  async function passwordDevice(up = true): Promise<{ device: StandInDevice; user: PasswordUser; sshpassLog: string; env: Record<string, string> }> {
    const user = passwordUser();
    const device = new StandInDevice('reinstall', user, []);
    devices.push(device);
    await device.start(up);
    const bin = tempDir('sshpass-shim');
    const sshpassLog = path.join(bin, 'argv');
    fs.writeFileSync(path.join(bin, 'sshpass'), `#!/bin/sh\nprintf '%s\\n' "$@" >> ${sshpassLog}\nexec /usr/bin/sshpass "$@"\n`, { mode: 0o755 });
    return { device, user, sshpassLog, env: { ...env(), PATH: `${bin}:${env().PATH}` } };
  }

  it('logs in with test_password, installs the agents\' key, and provisions as with a key; the password is in no argv and no output', async () => {
    const { device, user, sshpassLog, env: shimmed } = await passwordDevice();
    const dirs = oemJob(device, { url: `${imageBase}/somerville-noble.iso` }, {}, { test_data: { test_username: user.name, test_password: user.password } });
    const run = await runPhase(dirs, 'oemscript', 'provision', shimmed);
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toMatch(new RegExp(`"${user.name}@127.0.0.1" \\(port \\d+\\) refused the agents' key and took the job's password \\(sshpass\\)`));
    expect(device.events).toEqual(['reboot', 'restore']);
    expect(run.out).toMatch(/runs the restored image/);
    const argv = fs.readFileSync(sshpassLog, 'utf8');
    expect(argv.split('\n').slice(0, 5)).toEqual(['-e', 'ssh-copy-id', '-f', '-i', `${clientHome}/.ssh/id_rsa.pub`]);
    expect(argv).toContain(`${user.name}@127.0.0.1`);
    expect(argv).not.toContain(user.password);
    expect(run.out).not.toContain(user.password);
  });

  it('a device that takes neither the key nor the password is not reached: reboot_script, then upstream\'s boot wait runs out (exit 1)', async () => {
    const { device, user, env: shimmed } = await passwordDevice();
    const dirs = oemJob(device, { url: `${imageBase}/x.iso` }, { reboot_script: ['true'], oem_boot_wait_seconds: 4 }, { test_data: { test_username: user.name, test_password: 'not-the-password' } });
    const run = await runPhase(dirs, 'oemscript', 'provision', shimmed);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/running reboot_script command "true"/);
    expect(run.out).toMatch(/answered neither to the agents' key nor to the job's password within 4s: .*Permission denied/);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError' });
    expect(device.events).toEqual([]);
  });
});
