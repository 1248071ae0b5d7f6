/**
 * dragonboard through the phase scripts, against an emulated board (sshboards): a Debian master
 * image (key login) that writes the SD card, a plain file in the board's fake root, with real
 * `unxz` and `dd` from the connector's one-shot image server, and a test image that boots fresh
 * from the card and lets the test user in by password. The select scripts and reboot_script
 * are the board's own switches.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { runJobThroughAgent } from '../helpers/agent-lab';
import { agentWithJob, errorFile, runPhase } from '../helpers/phase-script';
import { ImageServer } from '../helpers/image-server';
import { passwordUser } from '../helpers/password-user';
import { serialConsole } from '../helpers/serial-console';
import { EmulatedBoard, type BoardImage } from '../helpers/sshboards';
import { sshKeygen, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

let clientHome: string;
let clientKey: KeyPair;
let user: { name: string; password: string };
let images: ImageServer;
const IMAGE = crypto.randomBytes(3 * 1024 * 1024 + 17);

beforeAll(async () => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  user = passwordUser();
  images = await ImageServer.serving({ 'core-22-arm64.img': IMAGE, 'core-22-arm64.img.gz': zlib.gzipSync(IMAGE) });
});

const env = () => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome });

/** The master image: Debian's /etc/issue, no snap, nc over bash's /dev/tcp, and storage tools that only log. */
function masterImage(extra: Record<string, string> = {}): BoardImage {
  return {
    authorized: [clientKey.publicKey],
    shims: {
      cat: '[ "$1" = /etc/issue ] && { echo "Debian GNU/Linux 11 \\n \\l"; exit 0; }; exec /bin/cat "$@"',
      snap: 'echo "snap: command not found" >&2; exit 127',
      nc: 'exec 3<>/dev/tcp/$1/$2 && exec /bin/cat <&3',
      umount: 'exit 32',
      hdparm: 'exit 0',
      mount: 'exit 0',
      sgdisk: ': > "${@: -1}"',
      reboot: '(sleep 0.3; $BOARD_CTL reboot) >/dev/null 2>&1 &',
      ...extra,
    },
  };
}

/** The test image: Ubuntu Core with snap, installed fresh from the card at every boot. */
function testImage(): BoardImage {
  return { passwordLoginUser: user.name, freshEachBoot: true, shims: { snap: 'echo "The snap command lets you install, configure, refresh and remove snaps."' } };
}

async function board(extra: Record<string, string> = {}, boot = 'test'): Promise<EmulatedBoard> {
  const b = await new EmulatedBoard({ master: masterImage(extra), test: testImage() }).start(boot);
  fs.mkdirSync(b.file('mnt/system-data'), { mode: 0o777 });
  fs.writeFileSync(b.file('dev/mmcblk1'), 'the old test image', { mode: 0o666 });
  return b;
}

/** default.yaml as upstream's dragonboard takes it, with our port, master user and faster waits. */
function deviceConf(b: EmulatedBoard, conf: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    agent_name: 'dragonboard-1',
    device_ip: '127.0.0.1',
    ssh_port: b.port,
    test_device: '/dev/mmcblk1',
    snappy_writable_partition: '/dev/mmcblk1p10',
    select_master_script: [b.command('select master')],
    select_test_script: [b.command('select test')],
    reboot_script: [b.command('reboot')],
    master_username: os.userInfo().username,
    master_boot_timeout_seconds: 15,
    boot_timeout_seconds: 15,
    boot_poll_seconds: 0.3,
    boot_settle_seconds: 0.2,
    ...conf,
  };
}

function job(b: EmulatedBoard, conf: Record<string, unknown> = {}, image = 'core-22-arm64.img') {
  return agentWithJob(deviceConf(b, conf), { provision_data: { url: images.url(image) }, test_data: { test_username: user.name, test_password: user.password } });
}

describe('dragonboard', () => {
  it('boots the master image, writes the image to the SD card, seeds the user, boots the test image and copies the key with the password; the serial console is logged', async () => {
    const console = await serialConsole('U-Boot 2016.09 (dragonboard410c)\nStarting kernel ...\n');
    const b = await board();
    const dirs = job(b, { serial_host: '127.0.0.1', serial_port: console.port });
    const run = await runPhase(dirs, 'dragonboard', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(b.events).toEqual(['booted test', 'select master', 'reboot', 'booted master', 'select test', 'reboot', 'booted test']);
    expect(fs.readFileSync(b.file('dev/mmcblk1')).equals(IMAGE)).toBe(true);
    expect(fs.readFileSync(b.file('mnt/system-data/var/lib/cloud/seed/nocloud-net/user-data'), 'utf8')).toMatch(/^#cloud-config\npassword: ubuntu\n[\s\S]*ssh_pwauth: True\n$/);
    expect(fs.readFileSync(b.file('mnt/system-data/var/lib/cloud/seed/nocloud-net/meta-data'), 'utf8')).toBe('instance_id: cloud-image\n');
    expect(fs.readFileSync(b.file('mnt/system-data/etc/sudoers.d/ubuntu'), 'utf8')).toBe('ubuntu ALL=(ALL) NOPASSWD:ALL\n');
    expect(b.calls()).toEqual(expect.arrayContaining(['master: sudo umount /dev/mmcblk1*', 'master: sudo hdparm -z /dev/mmcblk1', 'master: sudo mount /dev/mmcblk1p10 /mnt', 'master: sudo /sbin/reboot']));
    expect(b.calls().some((c) => c.includes('sgdisk'))).toBe(false);
    expect(fs.readFileSync(path.join(b.home('test') ?? '', '.ssh', 'authorized_keys'), 'utf8')).toContain(clientKey.publicKey);
    expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toContain('Starting kernel ...');
    expect(run.out).not.toContain(user.password);
  });

  it('recompresses a gzip image to xz for the master image to unpack', async () => {
    const b = await board({}, 'master');
    const run = await runPhase(job(b, {}, 'core-22-arm64.img.gz'), 'dragonboard', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(b.events).toEqual(['booted master', 'select test', 'reboot', 'booted test']);
    expect(fs.readFileSync(b.file('dev/mmcblk1')).equals(IMAGE)).toBe(true);
  });

  it('a write that fails half-way wipes the card and fails the job (exit 1); the test image is not booted', async () => {
    const b = await board({ dd: 'for a; do case "$a" in of=*) f=${a#of=};; esac; done; head -c 65536 > "$f"; echo "dd: error writing \'$f\': Input/output error" >&2; exit 1' }, 'master');
    const dirs = job(b);
    const run = await runPhase(dirs, 'dragonboard', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/writing the image to \/dev\/mmcblk1 failed \(exit 1\): ".*Input\/output error/);
    expect(run.out).toMatch(/Failed to write image, cleaning up/);
    expect(b.calls()).toContain('master: sudo sgdisk -o /dev/mmcblk1');
    expect(fs.statSync(b.file('dev/mmcblk1')).size).toBe(0);
    expect(b.events).toEqual(['booted master']);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError' });
  });

  it('a test image that never boots fails the job once boot_timeout_seconds are up (exit 1)', async () => {
    const b = await board({}, 'master');
    const run = await runPhase(job(b, { select_test_script: [b.command('select nothing')], boot_timeout_seconds: 3 }), 'dragonboard', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/Failed to boot test image!/);
    expect(b.events).toEqual(['booted master', 'select nothing', 'reboot']);
    expect(fs.readFileSync(b.file('dev/mmcblk1')).equals(IMAGE)).toBe(true);
  });

  it('a master image that does not come up in master_boot_timeout_seconds is a recovery failure (exit 46)', async () => {
    const b = await board();
    const dirs = job(b, { select_master_script: [b.command('select nothing')], master_boot_timeout_seconds: 3 });
    const run = await runPhase(dirs, 'dragonboard', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: 'Could not reboot to master!' });
    expect(fs.readFileSync(b.file('dev/mmcblk1'), 'utf8')).toBe('the old test image');
  });

  it('a device in neither image is power cycled; still nothing is a recovery failure (exit 46)', async () => {
    const b = await board({}, 'nothing');
    const run = await runPhase(job(b, { master_boot_timeout_seconds: 2 }), 'dragonboard', 'provision', env());
    expect(run.code).toBe(46);
    expect(run.out).toMatch(/Device is in an unknown state, attempting to recover[\s\S]*Device is in an unknown state, may require manual recovery!/);
    expect(b.events).toEqual(['reboot']);
  });

  it('an image the server does not have fails the job before the card is touched (exit 1)', async () => {
    const b = await board({}, 'master');
    const run = await runPhase(job(b, {}, 'missing.img'), 'dragonboard', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/Error downloading image ".*missing\.img": HTTP 404/);
    expect(fs.readFileSync(b.file('dev/mmcblk1'), 'utf8')).toBe('the old test image');
  });
});

describe('dragonboard through the real agent', () => {
  it('an upstream-shaped job is provisioned by tf-provision, and its test_cmds reach the test image', async () => {
    const b = await board();
    const ssh = `ssh -p ${b.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    const result = await runJobThroughAgent({
      provisionType: 'dragonboard',
      device: deviceConf(b),
      job: { provision_data: { url: images.url('core-22-arm64.img') }, test_data: { test_username: user.name, test_password: user.password, test_cmds: `${ssh} ${user.name}@$DEVICE_IP snap -h` } },
      env: env(),
    });
    expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, test_status: 0 });
    expect(String(result['provision_output'])).toMatch(/Flashing Test Image[\s\S]*Creating Test User[\s\S]*Booting Test Image/);
    expect(String(result['test_output'])).toMatch(/The snap command lets you install/);
    expect(fs.readFileSync(b.file('dev/mmcblk1')).equals(IMAGE)).toBe(true);
  });
});
