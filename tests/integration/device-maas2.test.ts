/**
 * maas2 through the phase scripts, against the emulated `maas` CLI. The "deployed" test image is
 * a real sshd on 127.0.0.1 that starts when the emulated deploy finishes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmulatedMaas, type MaasBehaviour } from '../helpers/maas';
import { serialConsole } from '../helpers/serial-console';
import { agentWithJob, errorFile, runPhase, type AgentDir, type PhaseRun } from '../helpers/phase-script';
import { freePort, sshKeygen, TestSshd, type KeyPair } from '../helpers/sshd';
import { eventually, tempDir } from '../helpers/tmp';

jest.setTimeout(90_000);

let clientHome: string;
let clientKey: KeyPair;
const images: TestSshd[] = [];

beforeAll(() => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
});
afterAll(async () => {
  for (const image of images) await image.stopAndWait();
});

interface Lab {
  maas: EmulatedMaas;
  dirs: AgentDir;
  port: number;
  phase(phase: string): Promise<PhaseRun>;
  /** Runs provision while the test image "boots" (its sshd starts) when MAAS says the deploy is done. */
  provision(options?: { imageBoots: boolean }): Promise<PhaseRun>;
  /** The machine's sshd, once it has booted. */
  sshd(): TestSshd | undefined;
}

interface LabOptions {
  behaviour?: Partial<MaasBehaviour>;
  device?: Record<string, unknown>;
  job?: Record<string, unknown>;
  /** Stand-in commands (sudo, ...) first on PATH in the device's sessions. */
  sessionPath?: string;
  /** The machine answers over SSH before provisioning (the system installed earlier), and on through the deploy. */
  installed?: boolean;
}

async function lab(options: LabOptions = {}): Promise<Lab> {
  const maas = new EmulatedMaas('lab-maas', 'x7kq3a', options.behaviour);
  const port = await freePort();
  const device = {
    device_ip: '127.0.0.1',
    ssh_port: port,
    agent_name: 'agent-1',
    node_name: 'dut-maas-1',
    maas_user: 'lab-maas',
    node_id: 'x7kq3a',
    timeout_min: 0.25,
    maas_poll_seconds: 0.3,
    maas_release_wait_seconds: 3,
    maas_retry_backoff_seconds: 0.1,
    test_username: os.userInfo().username,
    ...options.device,
  };
  const dirs = agentWithJob(device, options.job ?? { provision_data: { distro: 'noble' } });
  let sshd: TestSshd | undefined;
  const boot = async () => {
    sshd = await new TestSshd().start([clientKey.publicKey], { port, sessionPath: options.sessionPath });
    images.push(sshd);
  };
  if (options.installed) await boot();
  const env = { ...maas.env(), HOME: clientHome };
  const phase = (name: string) => runPhase(dirs, 'maas2', name, env);
  const provision = async ({ imageBoots } = { imageBoots: true }) => {
    let over = false;
    const run = phase('provision').finally(() => (over = true));
    // The image boots when MAAS says the deploy is done; a deploy that never is, is some tests' point.
    const deployed = await eventually(() => fs.existsSync(maas.deployedSignal) || over, 'the deploy to finish or provision to end', 60_000);
    if (deployed && !over && imageBoots && !options.installed) await boot();
    return run;
  };
  return { maas, dirs, port, phase, provision, sshd: () => sshd };
}

describe('maas2 provision', () => {
  it('releases, sets the flat layout, allocates, deploys the job image and waits until it answers over SSH; test runs on it; cleanup releases it', async () => {
    const { maas, dirs, port, phase, provision } = await lab({ job: { provision_data: { distro: 'noble', kernel: 'hwe-24.04', user_data: '#cloud-config\nruncmd: [touch /x]\n' } } });
    const provisioned = await provision();
    expect(provisioned).toMatchObject({ code: 0 });
    expect(provisioned.out).toMatch(/MAAS: "dut-maas-1" deployed and booted/);
    expect(maas.calls()).toEqual(
      expect.arrayContaining(['machine release x7kq3a', 'machine set-storage-layout x7kq3a storage_layout=flat', 'machines allocate system_id=x7kq3a']),
    );
    expect(maas.machine()).toMatchObject({ status_name: 'Deployed', deployed: { distro_series: 'noble', hwe_kernel: 'hwe-24.04', user_data: '#cloud-config\nruncmd: [touch /x]\n' } });
    expect(JSON.parse(fs.readFileSync(path.join(dirs.runDir, 'device-info.json'), 'utf8'))).toEqual({ device_info: { device_ip: '127.0.0.1', agent_name: 'agent-1' } });

    const ssh = `ssh -p ${port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    fs.writeFileSync(path.join(dirs.runDir, 'testflinger.json'), JSON.stringify({ job_id: 'job-1', test_data: { test_cmds: [`${ssh} $(id -un)@$DEVICE_IP 'echo "on the deployed image: $HOME"'`] } }));
    const tested = await phase('test');
    expect(tested).toMatchObject({ code: 0 });
    expect(tested.out).toMatch(/on the deployed image: .*device-home/);

    expect(await phase('cleanup')).toMatchObject({ code: 0 });
    expect(maas.machine().status_name).toBe('Ready');
  });

  it('a failed deploy is released and reported with MAAS events and the installation log; the device stays online (exit 1)', async () => {
    const { maas, dirs, provision } = await lab({ behaviour: { deployOutcome: 'failed' } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/deploy of "dut-maas-1" failed: MAAS reports Failed deployment/);
    expect(run.out).toMatch(/MAAS: event: .*Failed deployment: curtin command failed/);
    expect(run.out).toMatch(/MAAS: installation log: .*FAIL: curtin command curthooks/);
    const calls = maas.calls();
    expect(calls.lastIndexOf('machine release x7kq3a')).toBeGreaterThan(calls.findIndex((c) => c.startsWith('machine deploy')));
    expect(maas.machine().status_name).toBe('Ready');
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError', exception_message: expect.stringMatching(/Failed deployment.*curtin command failed/) });
  });

  it('a deploy that never finishes fails after timeout_min and is released', async () => {
    const { maas, provision } = await lab({ behaviour: { deployOutcome: 'hang' }, device: { timeout_min: 0.05 } });
    const started = Date.now();
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/the deploy took more than 0.05 minutes \(last status: Deploying\)/);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(maas.machine().status_name).toBe('Ready');
  });

  it('a machine MAAS calls Deployed whose image never answers over SSH is not provisioned: timeout, released', async () => {
    const { maas, provision } = await lab({ device: { timeout_min: 0.1 } });
    const run = await provision({ imageBoots: false });
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/MAAS: "dut-maas-1": Deployed, not answering over SSH yet/);
    expect(run.out).toMatch(/the deploy took more than 0.1 minutes \(last status: Deployed, not answering over SSH yet\)/);
    expect(maas.machine().status_name).toBe('Ready');
  });

  it('a deployed machine whose addresses do not include device_ip is a bad device config, reported and released', async () => {
    const { maas, provision } = await lab({ device: { device_ip: 'localhost' } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/device_ip "localhost" is none of the machine's addresses in MAAS \(\["127.0.0.1"\]\)/);
    expect(maas.machine().status_name).toBe('Ready');
  });

  it('a machine MAAS will not allocate (busy) fails after upstream\'s retries, with MAAS\'s answer', async () => {
    const { maas, provision } = await lab({ behaviour: { busy: true } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/4 attempts failed: maas machines allocate system_id=x7kq3a failed \(exit 2\): "No machine with system ID x7kq3a available. \(409\)"/);
    expect(maas.calls().filter((c) => c.startsWith('machines allocate'))).toHaveLength(4);
    expect(maas.calls().some((c) => c.startsWith('machine deploy'))).toBe(false);
  });

  it('a CLI error is retried: one 503 on deploy, then the deploy goes through', async () => {
    const { maas, provision } = await lab({ behaviour: { failNext: { 'machine deploy': 1 } } });
    const run = await provision();
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/503 Service Unavailable.*trying again in 0.1s/);
    expect(maas.calls().filter((c) => c.startsWith('machine deploy'))).toHaveLength(2);
  });

  it('a distro MAAS does not have fails with MAAS\'s reason', async () => {
    const { provision } = await lab({ job: { provision_data: { distro: 'warty' } } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/'warty' is not a valid distro_series/);
  });
});

/**
 * The installed system's privileged side, for the steps before a deploy: sessions find a stand-in
 * `sudo` (efibootmgr with a canned boot menu, the TPM's PPI request file in this directory, snap)
 * and a `cat` that reads that request file where /sys would have it.
 */
class MachineStandIn {
  readonly dir = tempDir('maas-machine');
  readonly bin = path.join(this.dir, 'bin');
  readonly sudoLog = path.join(this.dir, 'sudo.log');
  readonly tpmRequest = path.join(this.dir, 'tpm-request');

  constructor(options: { efibootmgr?: boolean; tpm?: boolean } = {}) {
    const { efibootmgr = true, tpm = true } = options;
    const menu = ['BootCurrent: 0000', 'Timeout: 1 seconds', 'BootOrder: 0000,0002,0001,0003', 'Boot0000* ubuntu\tHD(1,GPT)', 'Boot0001* UEFI: PXE IPv4 Intel(R) Ethernet\tMAC()/IPv4(0.0.0.0)', 'Boot0002* UEFI: PXE IPv6 Intel(R) Ethernet\tMAC()/IPv6([::])', 'Boot0003* UEFI: PXE IPv4 Realtek USB\tUsb()/MAC()/IPv4(0.0.0.0)'];
    fs.mkdirSync(this.bin);
    const script = (name: string, body: string) => fs.writeFileSync(path.join(this.bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    script(
      'sudo',
      `echo "sudo $*" >> ${this.sudoLog}
case "$1 $2" in
  "efibootmgr -v") ${efibootmgr ? `printf '${menu.join('\\n')}\\n'` : 'echo "sudo: efibootmgr: command not found" >&2; exit 1'} ;;
  "efibootmgr -o") ${efibootmgr ? 'exit 0' : 'exit 1'} ;;
  "tee /sys/class/tpm/tpm0/ppi/request") ${tpm ? `/usr/bin/tee ${this.tpmRequest}` : 'echo "tee: /sys/class/tpm/tpm0/ppi/request: No such file or directory" >&2; exit 1'} ;;
  "snap install"|"snap alias") exit 0 ;;
  *) exit 1 ;;
esac`,
    );
    script('cat', `[ "$1" = /sys/class/tpm/tpm0/ppi/request ] && exec /bin/cat ${this.tpmRequest}\nexec /bin/cat "$@"`);
  }

  sudoCalls(): string[] {
    return fs.existsSync(this.sudoLog) ? fs.readFileSync(this.sudoLog, 'utf8').trimEnd().split('\n') : [];
  }
}

describe('maas2 before the deploy: reset_efi and clear_tpm, over SSH on the installed system', () => {
  it('reset_efi puts the IPv4 network entries first in the EFI boot order, before the release, and again at cleanup', async () => {
    const machine = new MachineStandIn();
    const { maas, phase, provision } = await lab({ device: { reset_efi: true }, sessionPath: machine.bin, installed: true });
    const run = await provision();
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toMatch(/MAAS: EFI boot order set to 0001,0003,0000,0002/);
    expect(machine.sudoCalls()).toEqual(['sudo efibootmgr -v', 'sudo efibootmgr -o 0001,0003,0000,0002']);
    expect(maas.calls()[0]).toBe('machine release x7kq3a');
    expect(await phase('cleanup')).toMatchObject({ code: 0 });
    expect(machine.sudoCalls().filter((c) => c.startsWith('sudo efibootmgr -o'))).toHaveLength(2);
  });

  it('reset_efi is best effort: without efibootmgr (even after the efitools snap) the machine is deployed with its boot order as it is', async () => {
    const machine = new MachineStandIn({ efibootmgr: false });
    const { maas, provision } = await lab({ device: { reset_efi: true }, sessionPath: machine.bin, installed: true });
    const run = await provision();
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toMatch(/cannot read the EFI boot order; deploying with it as it is/);
    expect(machine.sudoCalls()).toEqual(['sudo efibootmgr -v', 'sudo snap install efi-tools-ijohnson --devmode --edge', 'sudo snap alias efi-tools-ijohnson.efibootmgr efibootmgr', 'sudo efibootmgr -v']);
    expect(maas.machine().deployed).toMatchObject({ distro_series: 'noble' });
  });

  it('clear_tpm asks the installed system\'s firmware to clear the TPM (PPI request 5) and then deploys the job\'s image', async () => {
    const machine = new MachineStandIn();
    const { maas, provision } = await lab({ device: { clear_tpm: true }, sessionPath: machine.bin, installed: true });
    const run = await provision();
    expect(run).toMatchObject({ code: 0 });
    expect(fs.readFileSync(machine.tpmRequest, 'utf8')).toBe('5\n');
    expect(machine.sudoCalls()).toEqual(['sudo tee /sys/class/tpm/tpm0/ppi/request']);
    expect(maas.calls().filter((c) => c.startsWith('machine deploy'))).toEqual(['machine deploy x7kq3a distro_series=noble']);
  });

  it('clear_tpm on a machine whose installed system does not answer deploys the default image (jammy) first, clears from there, then deploys the job\'s', async () => {
    const machine = new MachineStandIn();
    const { maas, provision } = await lab({ device: { clear_tpm: true }, sessionPath: machine.bin });
    const run = await provision();
    expect(run).toMatchObject({ code: 0 });
    expect(fs.readFileSync(machine.tpmRequest, 'utf8')).toBe('5\n');
    expect(maas.calls().filter((c) => c.startsWith('machine deploy'))).toEqual(['machine deploy x7kq3a distro_series=jammy', 'machine deploy x7kq3a distro_series=noble']);
  });

  it('clear_tpm that fails on the freshly deployed default image too fails the job (exit 1), as upstream', async () => {
    const machine = new MachineStandIn({ tpm: false });
    const { maas, dirs, provision } = await lab({ device: { clear_tpm: true }, sessionPath: machine.bin });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError', exception_message: 'clearing the TPM failed' });
    expect(maas.calls().filter((c) => c.startsWith('machine deploy'))).toEqual(['machine deploy x7kq3a distro_series=jammy']);
  });
});

describe('maas2 serial console', () => {
  it('with serial_host and serial_port, the console is logged to provision-serial.log during provision and test-serial.log during test', async () => {
    const consoleServer = await serialConsole('[    0.000000] Linux version 6.8.0-31-generic\r\ndut-maas-1 login:\r\n');
    try {
      const { dirs, phase, provision } = await lab({ device: { serial_host: '127.0.0.1', serial_port: consoleServer.port } });
      const run = await provision();
      expect(run).toMatchObject({ code: 0 });
      expect(run.out).toContain('Successfully connected to serial logging server');
      expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toBe('[    0.000000] Linux version 6.8.0-31-generic\r\ndut-maas-1 login:\r\n');
      fs.writeFileSync(path.join(dirs.runDir, 'testflinger.json'), JSON.stringify({ job_id: 'job-1', test_data: { test_cmds: ['sleep 1'] } }));
      expect(await phase('test')).toMatchObject({ code: 0 });
      expect(fs.readFileSync(path.join(dirs.runDir, 'test-serial.log'), 'utf8')).toContain('dut-maas-1 login:');
    } finally {
      await consoleServer.close();
    }
  });

  it('a console server that is not there is reported once and does not fail the phase', async () => {
    const port = await freePort();
    const { dirs, provision } = await lab({ device: { serial_host: '127.0.0.1', serial_port: port } });
    const run = await provision();
    expect(run).toMatchObject({ code: 0 });
    expect(run.out.match(/Error connecting to serial logging server. Retrying in the background.../g)).toHaveLength(1);
    expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toBe('');
  });
});

describe('maas2 release and recovery', () => {
  it('a machine that cannot be brought back to Ready is a recovery failure: exit 46 and the error file', async () => {
    const { maas, dirs, phase } = await lab({ behaviour: { releaseStuck: true, markFixedFails: true }, device: { maas_release_wait_seconds: 1 } });
    const run = await phase('cleanup');
    expect(run.code).toBe(46);
    expect(run.out).toMatch(/still "Releasing" after release; marking it broken and fixed/);
    expect(maas.calls()).toEqual(expect.arrayContaining(['machine mark-broken x7kq3a', 'machine power-off x7kq3a']));
    expect(errorFile(dirs)['cleanup_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: expect.stringMatching(/could not be released: MAAS still reports "Broken"/) });
  });

  it('a release stuck in Releasing is kicked (mark broken, mark fixed) back to Ready', async () => {
    const { maas, phase } = await lab({ behaviour: { releaseStuck: true }, device: { maas_release_wait_seconds: 1 } });
    const run = await phase('cleanup');
    expect(run.code).toBe(0);
    expect(maas.calls().slice(-3)).toEqual(expect.arrayContaining(['machine mark-fixed x7kq3a']));
    expect(maas.machine().status_name).toBe('Ready');
  });
});

const layout = [
  { id: 'root-disk', type: 'disk', disk: 0, ptable: 'gpt', name: 'rootdisk' },
  { id: 'efi', type: 'partition', device: 'root-disk', number: 1, size: '500M' },
  { id: 'efi-fs', type: 'format', volume: 'efi', fstype: 'fat32', label: 'efi' },
  { id: 'efi-mount', type: 'mount', device: 'efi-fs', path: '/boot/efi' },
  { id: 'root', type: 'partition', device: 'root-disk', number: 2, size: '100G', alloc_pct: 50 },
  { id: 'root-fs', type: 'format', volume: 'root', fstype: 'ext4', label: 'root' },
  { id: 'root-mount', type: 'mount', device: 'root-fs', path: '/' },
  { id: 'data-disk', type: 'disk', disk: 1 },
  { id: 'data-fs', type: 'format', volume: 'data-disk', fstype: 'xfs' },
  { id: 'data-mount', type: 'mount', device: 'data-fs', path: '/data' },
];

describe('maas2 storage layouts', () => {
  it('applies a custom layout: clears the machine, picks disks, creates, formats and mounts in order', async () => {
    const { maas, provision } = await lab({ job: { provision_data: { distro: 'jammy', disks: layout } } });
    const run = await provision();
    expect(run).toMatchObject({ code: 0 });
    expect(maas.storageCalls()).toEqual([
      'partition delete x7kq3a 31 301',
      'block-device unmount x7kq3a 32',
      'block-device unformat x7kq3a 32',
      'block-device set-boot-disk x7kq3a 31',
      'block-device update x7kq3a 31 name=rootdisk',
      'partitions create x7kq3a 31 size=500000000',
      'partitions create x7kq3a 31 size=125000000000',
      'partition format x7kq3a 31 1000 fstype=fat32 label=efi',
      'partition format x7kq3a 31 1001 fstype=ext4 label=root',
      'block-device format x7kq3a 32 fstype=xfs',
      'partition mount x7kq3a 31 1000 mount_point=/boot/efi',
      'partition mount x7kq3a 31 1001 mount_point=/',
      'block-device mount x7kq3a 32 mount_point=/data',
    ]);
    expect(maas.calls().indexOf('machine release x7kq3a')).toBeLessThan(maas.calls().indexOf('partition delete x7kq3a 31 301'));
  });

  it('the device config default_disks is applied when the job gives no layout', async () => {
    const { maas, provision } = await lab({ device: { default_disks: layout.slice(0, 4) } });
    expect(await provision()).toMatchObject({ code: 0 });
    expect(maas.storageCalls()).toContain('partition mount x7kq3a 31 1000 mount_point=/boot/efi');
    expect(maas.storageCalls()).not.toContain('machine set-storage-layout x7kq3a storage_layout=flat');
  });

  it('refuses a bad layout by field before anything is sent to MAAS', async () => {
    const bad = [
      { id: 'd', type: 'disk' },
      { id: 'p1', type: 'partition', device: 'd', size: '10Q', alloc_pct: 70 },
      { id: 'p2', type: 'partition', device: 'nowhere', size: '1G' },
      { id: 'p3', type: 'partition', device: 'd', size: '1G', alloc_pct: 40 },
      { id: 'f', type: 'format', volume: 'p1', fstype: 'ext4; reboot' },
      { id: 'm', type: 'mount', device: 'p1', path: '/../etc' },
      { id: 'r', type: 'raid', level: 1 },
    ];
    const { maas, dirs, provision } = await lab({ job: { provision_data: { disks: bad } } });
    const run = await provision();
    expect(run.code).toBe(1);
    for (const field of ['disks[1].size', 'disks[4].fstype', 'disks[5].path', 'disks[6].type']) expect(run.out).toContain(`testflinger.json: provision_data.${field}: `);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'JobError' });
    expect(maas.calls()).toEqual([]);
  });

  it('refuses dangling references and more than 100% of a disk', async () => {
    const bad = [
      { id: 'd', type: 'disk' },
      { id: 'p1', type: 'partition', device: 'd', size: '1G', alloc_pct: 70 },
      { id: 'p2', type: 'partition', device: 'nowhere', size: '1G' },
      { id: 'p3', type: 'partition', device: 'd', size: '1G', alloc_pct: 40 },
      { id: 'm', type: 'mount', device: 'p1', path: '/' },
    ];
    const { maas, provision } = await lab({ job: { provision_data: { disks: bad } } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toContain('provision_data.disks[2].device: "nowhere" is not the id of a disk entry');
    expect(run.out).toContain('provision_data.disks[4].device: "p1" is not the id of a format entry');
    expect(run.out).toContain('provision_data.disks: the partitions on disk "d" take 110% (alloc_pct), more than 100%');
    expect(maas.calls()).toEqual([]);
  });

  it('a layout the machine cannot hold fails before its storage is touched', async () => {
    const { maas, provision } = await lab({ job: { provision_data: { disks: [{ id: 'd', type: 'disk' }, { id: 'p', type: 'partition', device: 'd', size: '2T' }] } } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/no free block device on the machine holds disk "d" \(its partitions need 2000000000000 bytes\)/);
    expect(maas.storageCalls()).toEqual([]);
  });

  it('a request MAAS refuses names the layout entry and MAAS\'s reason', async () => {
    const { provision } = await lab({ job: { provision_data: { disks: [{ id: 'd', type: 'disk' }, { id: 'p', type: 'partition', device: 'd', size: '1G' }, { id: 'f', type: 'format', volume: 'p', fstype: 'hfsplus' }] } } });
    const run = await provision();
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/storage layout: MAAS refused format "f": .*'hfsplus' is not a valid choice/);
  });
});

describe('maas2 device config', () => {
  it.each([
    [{ node_id: undefined }, /default\.yaml: node_id: Required/],
    [{ maas_user: '-oProxyCommand=x' }, /default\.yaml: maas_user: "-oProxyCommand=x" is not a MAAS profile name/],
    [{ default_disks: [{ id: 'd', type: 'disk', name: 'a b' }] }, /default\.yaml: default_disks\[0\]\.name: "a b" is not a disk name/],
  ])('refuses %j naming the file and key (exit 2)', async (change, message) => {
    const { phase } = await lab({ device: change });
    const run = await phase('provision');
    expect(run.code).toBe(2);
    expect(run.out).toMatch(message);
  });

  it('a MAAS profile this host is not logged in to fails with the CLI\'s answer', async () => {
    const { phase } = await lab({ device: { maas_user: 'other-maas', maas_retry_backoff_seconds: 0 } });
    const run = await phase('cleanup');
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/invalid choice: 'other-maas'/);
  });
});
