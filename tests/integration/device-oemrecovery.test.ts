/**
 * oemrecovery through the phase scripts, against an emulated Ubuntu Core board (sshboards): its
 * image lets the test user in by password only until the agent's key is copied, `snap reboot
 * --factory-reset` (the lab's recovery_cmds) reinstalls it as a fresh image without the key,
 * and snapd reports "Initialize device" Doing, then Done, as a first boot does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runJobThroughAgent } from '../helpers/agent-lab';
import { agentWithJob, errorFile, runPhase } from '../helpers/phase-script';
import { passwordUser } from '../helpers/password-user';
import { EmulatedBoard, type BoardImage } from '../helpers/sshboards';
import { sshKeygen, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

let clientHome: string;
let clientKey: KeyPair;
let user: { name: string; password: string };

beforeAll(() => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  user = passwordUser();
});

const env = () => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome });

/** snapd's answers: "Initialize device" is Done from the third look after a (re)install. */
function coreImage(resetTo = 'core'): BoardImage {
  return {
    passwordLoginUser: user.name,
    shims: {
      snap: `case "$1" in
  model) echo "brand-id: canonical"; echo "model:    ubuntu-core-22-amd64" ;;
  changes) n=$(cat $BOARD_STATE/looks 2>/dev/null || echo 0); echo $((n+1)) > $BOARD_STATE/looks
    [ "$n" -ge 2 ] && s=Done || s=Doing
    echo "ID   Status  Spawn  Ready  Summary"; echo "1    $s    today  today  Initialize device" ;;
  reboot) rm -f $BOARD_STATE/looks; (sleep 1; $BOARD_CTL reset ${resetTo}) >/dev/null 2>&1 & ;;
  *) exit 1 ;;
esac`,
    },
  };
}

async function board(images: Record<string, BoardImage>, boot: string | null = 'core', select = 'core'): Promise<EmulatedBoard> {
  const b = await new EmulatedBoard(images).start(boot);
  b.selected = select;
  return b;
}

/** default.yaml as upstream's oemrecovery takes it, with our port and faster waits. */
function deviceConf(b: EmulatedBoard, conf: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    agent_name: 'oemrecovery-1',
    device_ip: '127.0.0.1',
    ssh_port: b.port,
    reboot_script: [b.command('reboot')],
    recovery_cmds: ['sudo snap reboot --factory-reset'],
    boot_poll_seconds: 0.3,
    boot_timeout_seconds: 20,
    ...conf,
  };
}

function job(b: EmulatedBoard, conf: Record<string, unknown> = {}, testData: Record<string, unknown> = { test_username: user.name, test_password: user.password }) {
  return agentWithJob(deviceConf(b, conf), { provision_data: {}, test_data: testData });
}

function authorizedKeys(b: EmulatedBoard): string {
  return fs.readFileSync(path.join(b.home('core') ?? '', '.ssh', 'authorized_keys'), 'utf8');
}

describe('oemrecovery', () => {
  it("copies the agent's key with the password, runs recovery_cmds, waits for the reinstalled system to initialize and copies the key again; test runs on it", async () => {
    const b = await board({ core: coreImage() });
    const firstHome = b.home('core');
    const dirs = job(b);
    const run = await runPhase(dirs, 'oemrecovery', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(b.events).toEqual(['booted core', 'reset core', 'booted core']);
    expect(b.home('core')).not.toBe(firstHome);
    expect(b.calls()).toEqual(expect.arrayContaining(['core: sudo snap reboot --factory-reset', 'core: snap changes']));
    expect(authorizedKeys(b)).toContain(clientKey.publicKey);
    expect(run.out).toMatch(/Recovering OEM image[\s\S]*Running sudo snap reboot --factory-reset[\s\S]*Checking to see if the device is available/);
    expect(run.out).not.toContain(user.password);

    const ssh = `ssh -p ${b.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    fs.writeFileSync(path.join(dirs.runDir, 'testflinger.json'), JSON.stringify({ job_id: 'job-1', test_data: { test_cmds: [`${ssh} ${user.name}@$DEVICE_IP 'snap model'`] } }));
    const tested = await runPhase(dirs, 'oemrecovery', 'test', env());
    expect(tested).toMatchObject({ code: 0 });
    expect(tested.out).toMatch(/model: +ubuntu-core-22-amd64/);
  });

  it('a generic-classic image is ready as soon as it answers', async () => {
    const classic: BoardImage = { passwordLoginUser: user.name, shims: { snap: 'case "$1" in model) echo "model: generic-classic";; reboot) ($BOARD_CTL reset core) & ;; changes) exit 1;; esac' } };
    const b = await board({ core: classic });
    const run = await runPhase(job(b), 'oemrecovery', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(b.calls()).not.toContain('core: snap changes');
  });

  it('a device that refuses the password is power cycled with reboot_script and, refusing it still, fails once boot_timeout_seconds are up (exit 1)', async () => {
    const b = await board({ core: coreImage() });
    const dirs = job(b, { boot_timeout_seconds: 4 }, { test_username: user.name, test_password: 'not-the-password' });
    const run = await runPhase(dirs, 'oemrecovery', 'provision', env());
    // The password stays wrong after the power cycle: the system never counts as booted.
    expect(run.code).toBe(1);
    expect(b.events.slice(0, 3)).toEqual(['booted core', 'reboot', 'booted core']);
    expect(run.out).toMatch(/Failed to boot test image!/);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError', exception_message: 'Failed to boot test image!' });
  });

  it('a device that is down is power cycled, boots, and is recovered', async () => {
    const b = await board({ core: coreImage() }, null);
    const run = await runPhase(job(b), 'oemrecovery', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(b.events).toEqual(['reboot', 'booted core', 'reset core', 'booted core']);
  });

  it('is a recovery failure (exit 46) when reboot_script fails on a device that is down', async () => {
    const b = await board({ core: coreImage() }, null);
    const dirs = job(b, { reboot_script: ['false'] });
    const run = await runPhase(dirs, 'oemrecovery', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: expect.stringMatching(/reboot_script command "false" failed/) });
  });

  it('fails the job (exit 1, as upstream) when a device that is down must be power cycled and there is no reboot_script', async () => {
    const b = await board({ core: coreImage() }, null);
    const dirs = job(b, { reboot_script: undefined });
    const run = await runPhase(dirs, 'oemrecovery', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/the device must be power cycled and default\.yaml has no reboot_script/);
  });

  it('a recovered system that never comes back fails the job once boot_timeout_seconds are up (exit 1)', async () => {
    const b = await board({ core: coreImage('missing') });
    const started = Date.now();
    const run = await runPhase(job(b, { boot_timeout_seconds: 4 }), 'oemrecovery', 'provision', env());
    expect(run.code).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4000);
    expect(b.events).toEqual(['booted core', 'reset missing']);
    expect(run.out).toMatch(/Device "oemrecovery-1" unreachable, provisioning failed![\s\S]*Failed to boot test image!/);
  });

  it('a recovery command that fails fails the job with its output (exit 1)', async () => {
    const b = await board({ core: coreImage() });
    const run = await runPhase(job(b, { recovery_cmds: ['echo no recovery partition >&2; exit 3'] }), 'oemrecovery', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/failed \(exit 3\): "no recovery partition"/);
    expect(b.events).toEqual(['booted core']);
  });

  it('refuses a test_password it cannot pass to sshpass, without printing it', async () => {
    const b = await board({ core: coreImage() });
    const run = await runPhase(job(b, {}, { test_username: user.name, test_password: 'line\nbreak-secret' }), 'oemrecovery', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/test_data\.test_password: not a usable password/);
    expect(run.out).not.toContain('break-secret');
    expect(b.calls()).toEqual([]);
  });
});

describe('oemrecovery through the real agent', () => {
  it('an upstream-shaped job is provisioned by tf-provision, and its test_cmds reach the recovered system', async () => {
    const b = await board({ core: coreImage() });
    const ssh = `ssh -p ${b.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    const result = await runJobThroughAgent({
      provisionType: 'oemrecovery',
      device: deviceConf(b),
      job: { provision_data: {}, test_data: { test_username: user.name, test_password: user.password, test_cmds: `${ssh} ${user.name}@$DEVICE_IP snap model` } },
      env: env(),
    });
    expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, test_status: 0 });
    expect(String(result['provision_output'])).toMatch(/Recovering OEM image/);
    expect(String(result['test_output'])).toMatch(/ubuntu-core-22-amd64/);
    expect(b.events).toEqual(['booted core', 'reset core', 'booted core']);
  });
});
