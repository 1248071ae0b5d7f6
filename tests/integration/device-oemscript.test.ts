/**
 * The OEM script family through the phase scripts. The device is a stand-in: a real sshd on
 * 127.0.0.1 whose sessions find stand-in `sudo`, `reboot`, `dell-restore-system` and
 * `systemctl` first on PATH. It "reboots" by restarting its sshd on the same port, and a
 * restore replaces the test user's home (keeping only the key the recovery media carried).
 * The image comes from a local HTTP server.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { agentWithJob, errorFile, runPhase, type PhaseRun } from '../helpers/phase-script';
import { sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let clientHome: string;
let clientKey: KeyPair;
let imageServer: http.Server;
let imageBase: string;
const imageRequests: string[] = [];

beforeAll(async () => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  imageServer = http.createServer((req, res) => {
    imageRequests.push(req.url ?? '');
    if (req.url?.startsWith('/images/') && req.url.endsWith('.iso')) res.end(`ISO image ${req.url}\n`);
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((r) => imageServer.listen(0, '127.0.0.1', r));
  imageBase = `http://127.0.0.1:${(imageServer.address() as net.AddressInfo).port}/images`;
});
afterAll(async () => {
  await new Promise((r) => imageServer.close(r));
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
  readonly sshd = new TestSshd();
  readonly events: string[] = [];
  private handled = 0;
  private busy = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly restore: RestoreBehaviour = 'reinstall') {
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
  }

  async start(up = true): Promise<this> {
    await this.sshd.start([clientKey.publicKey], { sessionPath: this.bin });
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
afterAll(async () => {
  for (const device of devices) await device.stop();
});

async function standIn(restore: RestoreBehaviour = 'reinstall', up = true): Promise<StandInDevice> {
  const device = await new StandInDevice(restore).start(up);
  devices.push(device);
  return device;
}

function oemJob(device: StandInDevice, provisionData: Record<string, unknown>, extra: Record<string, unknown> = {}) {
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
    { provision_data: provisionData },
  );
}

const env = () => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome });

describe('oemscript', () => {
  it('reboots the device, puts the image on its recovery partition, restores, waits for the installer, and checks the new system; test runs on it', async () => {
    const device = await standIn();
    const url = `${imageBase}/somerville-jammy-oem-X42.iso`;
    const dirs = oemJob(device, { url });
    const run = await runPhase(dirs, 'oemscript', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(device.events).toEqual(['reboot', 'restore']);
    expect(imageRequests).toContain('/images/somerville-jammy-oem-X42.iso');
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
