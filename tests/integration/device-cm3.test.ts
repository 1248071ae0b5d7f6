/**
 * cm3 through the phase scripts, against two emulated boards (sshboards): the control host, a
 * key-login sshd reached by an alias of the agents' ssh config, whose `cm3-installer` downloads
 * the image from a local server onto the module's eMMC (a plain file in its fake root) and whose
 * `pi3gpio` switches the module between USB boot mode (no system answers) and its eMMC; and
 * the module, whose test image boots fresh each time and lets the test user in by password.
 * `mount` on the control host links /mnt to a partition's directory, so the seed lands there
 * (and `ls /mnt` lists it).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runJobThroughAgent } from '../helpers/agent-lab';
import { agentWithJob, errorFile, runPhase } from '../helpers/phase-script';
import { ImageServer } from '../helpers/image-server';
import { passwordUser } from '../helpers/password-user';
import { serialConsole } from '../helpers/serial-console';
import { EmulatedBoard } from '../helpers/sshboards';
import { sshKeygen, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

let clientHome: string;
let clientKey: KeyPair;
let user: { name: string; password: string };
let images: ImageServer;
const IMAGE = crypto.randomBytes(1024 * 1024 + 3);

beforeAll(async () => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  user = passwordUser();
  images = await ImageServer.serving({ 'ubuntu-core-22-cm3.img': IMAGE });
});

const env = () => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome });

/** The partitions a written image shows the control host: a boot partition and a root holding `rootEntry`. */
const LSBLK = '{"blockdevices": [{"name": "sda", "children": [{"name": "sda1"}, {"name": "sda2"}]}]}';

interface Cm3Lab {
  control: EmulatedBoard;
  module: EmulatedBoard;
}

/** `installer`: the body of cm3-installer (default: the image from the URL onto the eMMC). */
async function lab(rootEntry: string, options: { installer?: string; bootsAfterLow?: string } = {}): Promise<Cm3Lab> {
  const module = await new EmulatedBoard({ test: { passwordLoginUser: user.name, freshEachBoot: true } }).start('test');
  module.selected = 'test';
  const control = await new EmulatedBoard({
    control: {
      authorized: [clientKey.publicKey],
      shims: {
        pi3gpio: `[ "$2 $3" = "high 16" ] && exec ${module.ctl} select usb-boot; exec ${module.ctl} select ${options.bootsAfterLow ?? 'test'}`,
        'cm3-installer': options.installer ?? 'curl -fsS -o $BOARD_ROOT/dev/sda "$1" && echo "installed $1"',
        lsblk: `echo '${LSBLK}'`,
        ls: '[ "$1" = /mnt ] && exec /bin/ls $BOARD_ROOT/mnt/; exec /bin/ls "$@"',
        mount: 'rmdir $BOARD_ROOT/mnt 2>/dev/null; ln -sfn $BOARD_ROOT/parts/$(basename $1) $BOARD_ROOT/mnt',
        umount: 'rm -f $BOARD_ROOT/mnt && mkdir $BOARD_ROOT/mnt',
        udisksctl: 'echo "Powered off $3"',
      },
    },
  }).start('control');
  for (const [part, entry] of [['sda1', 'config.txt'], ['sda2', rootEntry]] as const) fs.mkdirSync(control.file(`parts/${part}/${entry}`), { recursive: true, mode: 0o777 });
  fs.chmodSync(control.file('parts'), 0o777);
  fs.mkdirSync(path.join(clientHome, '.ssh'), { recursive: true });
  fs.writeFileSync(path.join(clientHome, '.ssh', 'config'), `Host cm3-control\n  HostName 127.0.0.1\n  Port ${control.port}\n`);
  return { control, module };
}

/** default.yaml as upstream's cm3 takes it (the control host by an alias of the agents' ssh config), with faster waits. */
function deviceConf(l: Cm3Lab, conf: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    agent_name: 'cm3-1',
    device_ip: '127.0.0.1',
    ssh_port: l.module.port,
    control_host: 'cm3-control',
    control_user: os.userInfo().username,
    test_device: '/dev/sda',
    reboot_script: [l.module.command('reboot')],
    boot_timeout_seconds: 15,
    boot_poll_seconds: 0.3,
    boot_settle_seconds: 0.1,
    ...conf,
  };
}

function job(l: Cm3Lab, conf: Record<string, unknown> = {}, testData: Record<string, unknown> = { test_username: user.name, test_password: user.password }) {
  return agentWithJob(deviceConf(l, conf), { provision_data: { url: images.url('ubuntu-core-22-cm3.img') }, test_data: testData });
}

describe('cm3', () => {
  it('holds the module in USB boot mode, writes the image through the control host, seeds the user on Ubuntu Core, and boots the module into it; the serial console is logged', async () => {
    const console = await serialConsole('Raspberry Pi Bootcode\n');
    const l = await lab('system-data');
    const dirs = job(l, { serial_host: '127.0.0.1', serial_port: console.port });
    const run = await runPhase(dirs, 'cm3', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(l.module.events).toEqual(['booted test', 'select usb-boot', 'reboot', 'select test', 'reboot', 'booted test']);
    expect(fs.readFileSync(l.control.file('dev/sda')).equals(IMAGE)).toBe(true);
    expect(fs.readFileSync(l.control.file('parts/sda2/system-data/var/lib/cloud/seed/nocloud-net/user-data'), 'utf8')).toMatch(/^#cloud-config\npassword: ubuntu\n/);
    expect(l.control.calls()).toEqual(
      expect.arrayContaining(['control: sudo pi3gpio set high 16', `control: sudo cm3-installer ${images.url('ubuntu-core-22-cm3.img')}`, 'control: lsblk -J /dev/sda', 'control: sudo udisksctl power-off -b /dev/sda', 'control: sudo pi3gpio set low 16']),
    );
    expect(run.out).toMatch(/Creating Test User \(core image on sda2\)/);
    expect(fs.readFileSync(path.join(l.module.home('test') ?? '', '.ssh', 'authorized_keys'), 'utf8')).toContain(clientKey.publicKey);
    expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toContain('Raspberry Pi Bootcode');
    expect(run.out).not.toContain(user.password);
  });

  it('writes cloud.cfg.d on Ubuntu Core 20 and later', async () => {
    const l = await lab('snaps');
    const run = await runPhase(job(l), 'cm3', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(fs.readFileSync(l.control.file('parts/sda2/data/etc/cloud/cloud.cfg.d/99_nocloud.cfg'), 'utf8')).toMatch(/^#cloud-config\ndatasource_list: \[ NoCloud, None \]\n[\s\S]*      password: ubuntu\n/);
  });

  it("seeds a classic image and removes its fake-cloud datasource, which would hide the seed", async () => {
    const l = await lab('etc/cloud/cloud.cfg.d');
    fs.writeFileSync(l.control.file('parts/sda2/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg'), 'datasource_list: [None]\n', { mode: 0o666 });
    const run = await runPhase(job(l), 'cm3', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toMatch(/Creating Test User \(ubuntu image on sda2\)/);
    expect(fs.existsSync(l.control.file('parts/sda2/var/lib/cloud/seed/nocloud-net/meta-data'))).toBe(true);
    expect(fs.existsSync(l.control.file('parts/sda2/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg'))).toBe(false);
  });

  it('an install that fails half-way fails the job with the installer output (exit 1); the module is not booted', async () => {
    const l = await lab('system-data', { installer: 'curl -fsS "$1" | head -c 4096 > $BOARD_ROOT/dev/sda; echo "cm3-installer: write failed at 4096 bytes" >&2; exit 1' });
    const dirs = job(l);
    const run = await runPhase(dirs, 'cm3', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/'sudo' 'cm3-installer' .* on ".*@cm3-control" failed \(exit 1\): ".*cm3-installer: write failed at 4096 bytes"/);
    expect(l.module.events).toEqual(['booted test', 'select usb-boot', 'reboot']);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError' });
  });

  it('a module that never boots the new image fails the job once boot_timeout_seconds are up (exit 1)', async () => {
    const l = await lab('system-data', { bootsAfterLow: 'nothing' });
    const run = await runPhase(job(l, { boot_timeout_seconds: 3 }), 'cm3', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/Device cm3-1 unreachable after provisioning, deployment failed![\s\S]*Failed to boot test image!/);
  });

  it('a reboot_script that fails is a recovery failure (exit 46)', async () => {
    const l = await lab('system-data');
    const dirs = job(l, { reboot_script: ['false'] });
    const run = await runPhase(dirs, 'cm3', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError' });
  });
});

describe('cm3 through the real agent', () => {
  it('an upstream-shaped job is provisioned by tf-provision, and its test_cmds reach the new image', async () => {
    const l = await lab('system-data');
    const ssh = `ssh -p ${l.module.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    const result = await runJobThroughAgent({
      provisionType: 'cm3',
      device: deviceConf(l),
      job: { provision_data: { url: images.url('ubuntu-core-22-cm3.img') }, test_data: { test_username: user.name, test_password: user.password, test_cmds: `${ssh} ${user.name}@$DEVICE_IP 'echo hello from the compute module'` } },
      env: env(),
    });
    expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, test_status: 0 });
    expect(String(result['provision_output'])).toMatch(/Flashing image[\s\S]*Creating Test User \(core image on sda2\)/);
    expect(String(result['test_output'])).toMatch(/hello from the compute module/);
    expect(fs.readFileSync(l.control.file('dev/sda')).equals(IMAGE)).toBe(true);
  });
});
