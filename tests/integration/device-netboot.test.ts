/**
 * netboot through the phase scripts, against an emulated board (sshboards): its master image runs
 * the imager, an HTTP service on 127.0.0.1 that pulls the xz image from the connector's one-shot
 * server and unpacks it onto the target disk (a plain file in the board's fake root); its test
 * image boots fresh from that disk and lets the test user in by password only.
 */
import { execFile, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { runJobThroughAgent } from '../helpers/agent-lab';
import { agentWithJob, errorFile, runPhase } from '../helpers/phase-script';
import { ImageServer } from '../helpers/image-server';
import { passwordUser } from '../helpers/password-user';
import { serialConsole } from '../helpers/serial-console';
import { EmulatedBoard } from '../helpers/sshboards';
import { freePort, sshKeygen, type KeyPair } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

jest.setTimeout(120_000);

let clientHome: string;
let clientKey: KeyPair;
let user: { name: string; password: string };
let images: ImageServer;
const IMAGE = crypto.randomBytes(2 * 1024 * 1024 + 5);

beforeAll(async () => {
  clientHome = tempDir('agent-home');
  clientKey = sshKeygen(path.join(clientHome, '.ssh', 'id_rsa'));
  user = passwordUser();
  images = await ImageServer.serving({ 'netboot-core.img': IMAGE });
});

const env = () => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: clientHome });

/** The imager: GET /check, /writeimage?server=<host:port>&dev=<disk> (`failAfter` bytes: a disk that fails there), /reboot. */
class Imager {
  readonly writes: string[] = [];
  board: EmulatedBoard | undefined;
  private server: http.Server | undefined;
  constructor(
    readonly port: number,
    private readonly failAfter?: number,
  ) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server?.listen(this.port, '127.0.0.1', r));
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://imager');
    const board = this.board as EmulatedBoard;
    if (url.pathname === '/check') return void res.end('Snappy Test Device Imager\n');
    if (url.pathname === '/reboot') {
      execFile(board.ctl, ['reboot']);
      return void res.end('rebooting\n');
    }
    if (url.pathname !== '/writeimage') return void res.writeHead(404).end();
    const server = url.searchParams.get('server') ?? '';
    const dev = url.searchParams.get('dev') ?? '';
    this.writes.push(`${server} -> ${dev}`);
    const written = await this.write(server, board.file(dev.slice(1)));
    if (this.failAfter !== undefined) return void res.writeHead(500).end(`write error on ${dev} after ${written} bytes\n`);
    res.end(`wrote ${written} bytes\n`);
  }

  /** Pulls the xz stream from host:port and unpacks it onto `disk`, at most failAfter bytes. */
  private write(server: string, disk: string): Promise<number> {
    const [host, port] = server.split(':');
    return new Promise((resolve) => {
      const unxz = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
      const out = fs.createWriteStream(disk);
      let written = 0;
      unxz.stdout.on('data', (chunk: Buffer) => {
        const room = this.failAfter === undefined ? chunk.length : Math.max(0, this.failAfter - written);
        out.write(chunk.subarray(0, room));
        written += Math.min(room, chunk.length);
      });
      unxz.on('close', () => out.end(() => resolve(written)));
      const source = net.connect(Number(port), host);
      source.on('error', () => unxz.stdin.end());
      source.pipe(unxz.stdin);
    });
  }
}

/** A board in `boot` whose master image runs the imager. */
async function netbootBoard(boot: string, failAfter?: number): Promise<{ board: EmulatedBoard; imager: Imager }> {
  const imager = new Imager(await freePort(), failAfter);
  const board = new EmulatedBoard({ master: { alsoRuns: imager }, test: { passwordLoginUser: user.name, freshEachBoot: true } });
  imager.board = board;
  await board.start(boot);
  board.selected = boot;
  fs.writeFileSync(board.file('dev/sda'), 'the old test image', { mode: 0o666 });
  return { board, imager };
}

/** default.yaml as upstream's netboot takes it, with our ports and faster waits. */
function deviceConf(nb: { board: EmulatedBoard; imager: Imager }, conf: Record<string, unknown> = {}): Record<string, unknown> {
  const b = nb.board;
  return {
    agent_name: 'netboot-1',
    device_ip: '127.0.0.1',
    ssh_port: b.port,
    test_device: '/dev/sda',
    select_master_script: [`${b.command('select master')} && echo master selected`],
    select_test_script: [b.command('select test')],
    reboot_script: [b.command('reboot')],
    netboot_imager_port: nb.imager.port,
    master_boot_timeout_seconds: 15,
    boot_timeout_seconds: 15,
    boot_poll_seconds: 0.3,
    boot_settle_seconds: 0.2,
    ...conf,
  };
}

function job(nb: { board: EmulatedBoard; imager: Imager }, conf: Record<string, unknown> = {}, testData: Record<string, unknown> = { test_username: user.name, test_password: user.password }) {
  return agentWithJob(deviceConf(nb, conf), { provision_data: { url: images.url('netboot-core.img') }, test_data: testData });
}

describe('netboot', () => {
  it('takes a device from its old test image to the master image, has the imager write the image, boots the test image and copies the key with the password; the serial console is logged', async () => {
    const console = await serialConsole('netboot: PXE booting imager\n');
    const nb = await netbootBoard('test');
    const dirs = job(nb, { serial_host: '127.0.0.1', serial_port: console.port, post_flash_cmds: ['echo post-flash $((6 * 7)) >&2'] });
    const run = await runPhase(dirs, 'netboot', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(nb.board.events).toEqual(['booted test', 'select master', 'reboot', 'booted master', 'reboot', 'booted master', 'select test', 'reboot', 'booted test']);
    expect(nb.imager.writes).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+ -> \/dev\/sda$/)]);
    expect(fs.readFileSync(nb.board.file('dev/sda')).equals(IMAGE)).toBe(true);
    expect(run.out).toMatch(/Running echo post-flash \$\(\(6 \* 7\)\) >&2/);
    expect(run.out).toMatch(/Image write output:\nwrote 2097157 bytes/);
    expect(fs.readFileSync(path.join(dirs.runDir, 'provision-serial.log'), 'utf8')).toContain('PXE booting imager');
    expect(run.out).not.toContain(user.password);
  });

  it('a device already in its master image is written at once', async () => {
    const nb = await netbootBoard('master');
    const run = await runPhase(job(nb, { select_master_script: [] }), 'netboot', 'provision', env());
    expect(run).toMatchObject({ code: 0 });
    expect(nb.board.events).toEqual(['booted master', 'reboot', 'booted master', 'select test', 'reboot', 'booted test']);
  });

  it('an imager that fails half-way through the write fails the job (exit 1); the test image is not booted', async () => {
    const nb = await netbootBoard('master', 512 * 1024);
    const dirs = job(nb);
    const run = await runPhase(dirs, 'netboot', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/Error while flashing image! \("HTTP 500: write error on \/dev\/sda after 524288 bytes/);
    expect(fs.statSync(nb.board.file('dev/sda')).size).toBe(512 * 1024);
    expect(nb.board.events).toEqual(['booted master']);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'ConnectorError' });
  });

  it('a test image that never boots fails the job once boot_timeout_seconds are up (exit 1)', async () => {
    const nb = await netbootBoard('master');
    const run = await runPhase(job(nb, { select_test_script: [nb.board.command('select nothing')], boot_timeout_seconds: 3 }), 'netboot', 'provision', env());
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/Failed to boot test image!/);
    expect(nb.board.events.slice(-2)).toEqual(['select nothing', 'reboot']);
  });

  it('a wrong test_password leaves the device unusable: a recovery failure (exit 46)', async () => {
    const nb = await netbootBoard('test');
    const dirs = job(nb, { boot_timeout_seconds: 2 }, { test_username: user.name, test_password: 'wrong' });
    const run = await runPhase(dirs, 'netboot', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: 'Unable to put system in a usable state!', exception_cause: 'ConnectorError: Failed to boot test image!' });
  });

  it('a master image that does not come up in master_boot_timeout_seconds is a recovery failure (exit 46)', async () => {
    const nb = await netbootBoard('test');
    const dirs = job(nb, { select_master_script: [nb.board.command('select nothing')], master_boot_timeout_seconds: 2 });
    const run = await runPhase(dirs, 'netboot', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_name: 'RecoveryError', exception_message: 'Could not reboot to master image!' });
  });

  it('a select script that fails names the command and its exit code (exit 46 before the write: the device is not usable)', async () => {
    const nb = await netbootBoard('test');
    const dirs = job(nb, { select_master_script: ['exit 7'] });
    const run = await runPhase(dirs, 'netboot', 'provision', env());
    expect(run.code).toBe(46);
    expect(errorFile(dirs)['provision_exception_info']).toMatchObject({ exception_message: 'Unable to put system in a usable state!', exception_cause: 'ConnectorError: Error running "exit 7" (rc=7): ""' });
  });
});

describe('netboot through the real agent', () => {
  it('an upstream-shaped job is provisioned by tf-provision, and its test_cmds reach the test image', async () => {
    const nb = await netbootBoard('master');
    const ssh = `ssh -p ${nb.board.port} -i ${clientKey.privateKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    const result = await runJobThroughAgent({
      provisionType: 'netboot',
      device: deviceConf(nb),
      job: { provision_data: { url: images.url('netboot-core.img') }, test_data: { test_username: user.name, test_password: user.password, test_cmds: `${ssh} ${user.name}@$DEVICE_IP 'echo hello from the netbooted image'` } },
      env: env(),
    });
    expect(result).toMatchObject({ job_state: 'complete', provision_status: 0, test_status: 0 });
    expect(String(result['provision_output'])).toMatch(/Flashing Test Image[\s\S]*Image write output:[\s\S]*Booting Test Image/);
    expect(String(result['test_output'])).toMatch(/hello from the netbooted image/);
    expect(fs.readFileSync(nb.board.file('dev/sda')).equals(IMAGE)).toBe(true);
  });
});
