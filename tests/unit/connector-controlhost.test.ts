/**
 * The control-host base in process, against the emulated control host: the request upstream
 * sends, the log stream shown line by line, reconnects with upstream's backoff, and the control
 * host's own outcome deciding the result.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jobFileSchema } from '../../src/connector/config';
import { ConnectorError } from '../../src/connector/errors';
import type { PhaseContext } from '../../src/connector/phases';
import { controlHostConfigSchema, readTimeoutSeconds } from '../../src/connector/devices/controlhost/config';
import { powerCycleControlHost } from '../../src/connector/controlhost-hooks';
import { jobSecrets, provisionOnControlHost } from '../../src/connector/devices/controlhost/run';
import { EmulatedControlHost, type ControlHostBehaviour } from '../helpers/controlhost';
import { freePort } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

const hosts: EmulatedControlHost[] = [];
afterAll(async () => {
  for (const host of hosts) await host.stop();
});

interface Harness {
  host: EmulatedControlHost;
  lines: string[];
  /** The pauses before each reconnect, in seconds. */
  pauses: number[];
  runDir: string;
  provision(kwargs?: Record<string, unknown>): Promise<void>;
  powerCycle(manageDutPower: boolean): Promise<void>;
}

async function harness(behaviour: Partial<ControlHostBehaviour> = {}, options: { device?: Record<string, unknown>; provisionData?: Record<string, unknown>; testData?: Record<string, unknown>; port?: number } = {}): Promise<Harness> {
  const host = await new EmulatedControlHost(behaviour).start();
  hosts.push(host);
  const lines: string[] = [];
  const pauses: number[] = [];
  const runDir = tempDir('ch-run');
  const config = controlHostConfigSchema.parse({
    device_ip: '10.1.1.1',
    agent_name: 'kvm-agent-1',
    control_host: '127.0.0.1',
    control_host_rest_port: options.port ?? host.port,
    reboot_script: ['pdu off 3', 'pdu on 3'],
    env: { CID: '202507-01234' },
    ...options.device,
  });
  const job = jobFileSchema.parse({ job_id: 'j1', provision_data: options.provisionData ?? {}, test_data: options.testData ?? {} });
  const ctx: PhaseContext = { device: config, job, runDir, print: (line) => lines.push(line), sleep: async (ms) => void pauses.push(ms / 1000) };
  const provision = (kwargs: Record<string, unknown> = { url: 'http://images/x.iso', username: 'ubuntu', password: 'ubuntu' }) =>
    provisionOnControlHost({ ctx, config, readTimeoutSeconds: readTimeoutSeconds(job), secrets: jobSecrets(job) }, 'ProvisioningKVM', kwargs);
  return { host, lines, pauses, runDir, provision, powerCycle: (manageDutPower) => powerCycleControlHost(ctx, config, manageDutPower) };
}

const entries = (n: number) => Array.from({ length: n }, (_, i) => ({ level: 'INFO', message: `step ${i + 1}` }));
const shown = (lines: string[]) => lines.filter((l) => l.startsWith('[control-host]'));

describe('the provisioning request', () => {
  it("is upstream's: method, empty args, kwargs with the agent's identity and the config's scripts; a job's reboot_script is kept", async () => {
    const { host, provision } = await harness({}, { device: { poweroff_script: ['pdu off 3'] } });
    await provision({ url: 'http://images/x.iso', username: 'u', password: 'p', reboot_script: ['job-cmd'] });
    expect(host.provisions).toEqual([
      {
        method: 'ProvisioningKVM',
        args: [],
        kwargs: { url: 'http://images/x.iso', username: 'u', password: 'p', reboot_script: ['job-cmd'], poweron_script: null, poweroff_script: ['pdu off 3'], agent_name: 'kvm-agent-1', cid: '202507-01234', device_ip: '10.1.1.1' },
      },
    ]);
    expect(host.calls).toEqual(['POST /api/v1/provision', 'GET /api/v1/provision/job-1/logs', 'GET /api/v1/provision/job-1']);
  });

  it('the identity fields cannot be overridden by the job, and reboot_script comes from the config otherwise', async () => {
    const { host, provision } = await harness();
    await provision({ url: 'http://images/x.iso', username: 'u', password: 'p', agent_name: 'spoofed', device_ip: '6.6.6.6' });
    expect(host.provisions[0]?.kwargs).toMatchObject({ agent_name: 'kvm-agent-1', device_ip: '10.1.1.1', reboot_script: ['pdu off 3', 'pdu on 3'] });
  });

  it('uploads the provision attachment as multipart (request + boot_binary); a symlink there is not followed', async () => {
    const { host, runDir, provision } = await harness();
    const dir = path.join(runDir, 'attachments', 'provision');
    fs.mkdirSync(dir, { recursive: true });
    fs.symlinkSync('/etc/passwd', path.join(dir, 'a-link.img'));
    fs.writeFileSync(path.join(dir, 'boot.img'), 'BOOT BINARY');
    await provision();
    expect(host.calls[0]).toBe('POST /api/v1/provision/multipart');
    expect(host.provisions[0]).toMatchObject({ method: 'ProvisioningKVM', kwargs: { agent_name: 'kvm-agent-1' }, attachment: { name: 'boot.img', content: 'BOOT BINARY' } });
  });

  it('a request the control host refuses (4xx) fails with its status and answer', async () => {
    const { host, provision } = await harness();
    await expect(provision({ preset: 'no-such-preset', username: 'u', password: 'p' })).rejects.toThrow(/POST http:\/\/127\.0\.0\.1:\d+\/api\/v1\/provision answered HTTP 422: .*unknown preset \\"no-such-preset\\"/);
    expect(host.calls).toEqual(['POST /api/v1/provision']);
  });

  it("the job's password, quoted back in a refusal, is masked in the message", async () => {
    const { provision } = await harness({}, { testData: { test_password: 'secret-Pw-42' } });
    const refused = provision({ preset: 'secret-Pw-42', username: 'u', password: 'secret-Pw-42' });
    await expect(refused).rejects.toThrow('unknown preset \\"****\\"');
    await expect(refused).rejects.not.toThrow('secret-Pw-42');
  });

  it('an unreachable control host fails the provisioning, naming the URL', async () => {
    const { provision } = await harness({}, { port: await freePort() });
    await expect(provision()).rejects.toThrow(/POST http:\/\/127\.0\.0\.1:\d+\/api\/v1\/provision failed: fetch failed: .*ECONNREFUSED/);
  });
});

describe('the log stream and the outcome', () => {
  it("shows every entry as it comes, at its level, and ends when the control host's job completed", async () => {
    const { lines, provision } = await harness({ logs: [{ level: 'INFO', message: 'flashing' }, { level: 'warning', message: 'disk space low\nsecond line' }, { level: 'shout', message: 'odd' }] });
    await provision();
    expect(shown(lines)).toEqual(['[control-host] flashing', '[control-host] WARNING: disk space low', '[control-host] WARNING: second line', '[control-host] odd']);
    expect(lines).toContain('Unknown log level "shout", defaulting to INFO');
  });

  it("a failed job fails with the control host's error; without one, with upstream's message", async () => {
    const failing = await harness({ outcome: 'failed', error: 'robot task login.robot failed' });
    await expect(failing.provision()).rejects.toThrow(new ConnectorError('robot task login.robot failed'));
    const silent = await harness({ outcome: 'failed' });
    await expect(silent.provision()).rejects.toThrow('Provisioning failed for unknown reason.');
  });

  it('a stream dropped mid-way is reopened after the last entry shown (Last-Event-ID): nothing lost, nothing twice', async () => {
    const { host, lines, pauses, provision } = await harness({ logs: entries(5), drops: [2] });
    await provision();
    expect(shown(lines)).toEqual(['step 1', 'step 2', 'step 3', 'step 4', 'step 5'].map((m) => `[control-host] ${m}`));
    expect(host.logConnections).toEqual([null, '2']);
    expect(pauses).toEqual([2]);
    expect(lines).toContain('SSE stream disconnected but job job-1 is still running, reconnecting in 2s...');
  });

  it('a stream cut off mid-response is reopened as a dropped one (where upstream fails)', async () => {
    const { host, lines, provision } = await harness({ logs: entries(3), entryMs: 200, cutAfter: 1 });
    await provision();
    expect(shown(lines)).toEqual(['step 1', 'step 2', 'step 3'].map((m) => `[control-host] ${m}`));
    expect(lines.some((l) => l.startsWith('the log stream of job job-1 broke: '))).toBe(true);
    expect(host.logConnections).toEqual([null, '1']);
  });

  it('entries a cut-off stream did not bring are still shown when the job has ended meanwhile', async () => {
    const { host, lines, provision } = await harness({ logs: entries(3), entryMs: 5, cutAfter: 1 });
    await provision();
    expect(shown(lines)).toEqual(['step 1', 'step 2', 'step 3'].map((m) => `[control-host] ${m}`));
    expect(host.calls.slice(-2)).toEqual(['GET /api/v1/provision/job-1', 'GET /api/v1/provision/job-1/logs']);
  });

  it('reconnects that bring nothing double the pause from 2 s up to 30 s; one that brings entries resets it', async () => {
    const { host, pauses, provision } = await harness({ logs: entries(3), entryMs: 300, drops: [0, 0, 0, 0, 0, 0, 1, 0] });
    await provision();
    // Six empty connections; the seventh brings step 1 before dropping (its pause is still the
    // doubled one, as upstream's), so the pause after the eighth, empty again, is back to 2.
    expect(pauses).toEqual([2, 4, 8, 16, 30, 30, 30, 2]);
    expect(host.logConnections).toEqual([null, null, null, null, null, null, null, '1', '1']);
  });

  it('a malformed entry is reported, not counted, and does not move the resume cursor', async () => {
    const { host, lines, provision } = await harness({ logs: entries(2), preamble: 'id: 7\ndata: {not json\n\n', drops: [0] });
    await provision();
    expect(lines).toContain('Malformed SSE data: "{not json"');
    // The first connection brought only the malformed entry (id 7): the second starts from scratch.
    expect(host.logConnections).toEqual([null, null]);
    expect(shown(lines)).toEqual(['[control-host] step 1', '[control-host] step 2']);
  });

  it('a control host silent for longer than provisioning_timeout fails the provisioning', async () => {
    const { provision } = await harness({ logs: entries(1), entryMs: 1500 }, { provisionData: { provisioning_timeout: 0.5 } });
    await expect(provision()).rejects.toThrow(/the control host sent nothing for 0.5s/);
  });
});

describe('the power cycle before provisioning (control_host_reboot_script)', () => {
  /** A lab: the reboot script "powers on" the emulated host; the DUT scripts leave marks. */
  async function lab(options: { rebootPowersOn: boolean; readyWait?: number }) {
    const dir = tempDir('ch-power');
    const flag = path.join(dir, 'power-on');
    const device = {
      control_host_reboot_script: [options.rebootPowersOn ? `touch ${flag}` : 'true'],
      control_host_offline_wait_seconds: 0,
      control_host_ready_wait_seconds: options.readyWait ?? 30,
      poweroff_script: [`touch ${path.join(dir, 'dut-off')}`],
      poweron_script: [`touch ${path.join(dir, 'dut-on')}`],
    };
    const h = await harness({ powerOnFlag: flag }, { device });
    return { ...h, marks: () => ['dut-off', 'dut-on'].filter((f) => fs.existsSync(path.join(dir, f))) };
  }

  it('powers the control host off through its API, runs the reboot script, and waits until /health answers; the DUT is off meanwhile', async () => {
    const { host, lines, marks, powerCycle } = await lab({ rebootPowersOn: true });
    await powerCycle(true);
    expect(host.calls).toEqual(['POST /api/v1/system/poweroff', 'GET /health']);
    expect(host.boots).toBe(1);
    expect(marks()).toEqual(['dut-off', 'dut-on']);
    expect(lines).toContain('Attempt to power cycle the control host.');
  });

  it('control_host_kvm leaves the DUT alone (only control_host_iot manages its power)', async () => {
    const { marks, powerCycle } = await lab({ rebootPowersOn: true });
    await powerCycle(false);
    expect(marks()).toEqual([]);
  });

  it('a control host whose API does not come back fails the provisioning; the DUT is powered on again all the same', async () => {
    const { marks, powerCycle } = await lab({ rebootPowersOn: false, readyWait: 0.5 });
    await expect(powerCycle(true)).rejects.toThrow("the control host's REST API did not come back within 0.5s after its power cycle");
    expect(marks()).toEqual(['dut-off', 'dut-on']);
  });

  it('DISABLE_CONTROL_HOST_POWERCYCLE skips it', async () => {
    const { host, powerCycle } = await lab({ rebootPowersOn: true });
    process.env['DISABLE_CONTROL_HOST_POWERCYCLE'] = '1';
    try {
      await powerCycle(true);
    } finally {
      delete process.env['DISABLE_CONTROL_HOST_POWERCYCLE'];
    }
    expect(host.calls).toEqual([]);
  });
});
