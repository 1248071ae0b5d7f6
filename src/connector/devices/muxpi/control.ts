/**
 * The control host, over SSH as control_user with the agents' key (the same ssh and ssh config
 * as the device's: the operator's ssh-config first). Commands go to its shell as they are; every
 * value the connector puts in one is quoted with shellWords.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DeviceConfig } from '../../config';
import type { PhaseContext } from '../../phases';
import { sshArgs, sshConfigText, sshRun, type SshResult } from '../../ssh';
import { shellWords } from '../../steps';
import { quoted } from '../../../common/text';
import type { SshUser } from '../../validate';
import type { MuxpiConfig } from './config';
import { ProvisioningError } from './errors';

/** Upstream's time limit of one control host command, and its pause between retries. */
export const COMMAND_TIMEOUT_MS = 60_000;
const RETRY_PAUSE_SECONDS = 5;
/** ssh's own failure (no connection), and our time limit's: the two a retry may cure. */
const SSH_FAILED = 255;
const TIMED_OUT = 124;

export class ControlHost {
  /** The control host as an ssh target: its port and options come from the ssh config. */
  private readonly target: DeviceConfig;
  private readonly user: SshUser;

  constructor(
    private readonly ctx: PhaseContext,
    private readonly config: MuxpiConfig,
  ) {
    this.target = { ...config, device_ip: config.control_host, ssh_port: undefined };
    this.user = config.control_user;
  }

  get name(): string {
    return quoted(`${this.user}@${this.config.control_host}`);
  }

  /**
   * Runs `command`; a control host that cannot be reached (or a command that times out) is tried
   * again every 5 s for muxpi_control_retry_seconds, as upstream. A command that ran and failed
   * is an answer: returned as it is, not retried (upstream retries those too).
   */
  async attempt(command: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<SshResult> {
    const attempts = Math.floor(this.config.muxpi_control_retry_seconds / RETRY_PAUSE_SECONDS) + 1;
    let result: SshResult = { exitCode: SSH_FAILED, output: '' };
    for (let n = 1; n <= attempts; n++) {
      result = await sshRun(this.target, this.user, command, undefined, timeoutMs);
      if (result.exitCode !== SSH_FAILED && result.exitCode !== TIMED_OUT) return result;
      if (n < attempts) {
        this.ctx.print(`Control command failed, retrying in ${RETRY_PAUSE_SECONDS}s (${n}/${attempts}): ${quoted(command)}: ${quoted(result.output.trim())}`);
        await this.ctx.sleep(RETRY_PAUSE_SECONDS * 1000);
      }
    }
    return result;
  }

  /** Runs `command` and returns its output; a failure is a ProvisioningError quoting the output. */
  async run(command: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const result = await this.attempt(command, timeoutMs);
    if (result.exitCode !== 0) throw new ProvisioningError(`${quoted(command)} on the control host ${this.name} failed (exit ${result.exitCode}): ${quoted(result.output.trim(), 400)}`);
    return result.output;
  }

  /** Whether `command` succeeds (a probe: `test -e`, `grep`). */
  async succeeds(command: string): Promise<boolean> {
    return (await this.attempt(command)).exitCode === 0;
  }

  /** Writes `content` to `remotePath` as root (`sudo tee`); upstream copies it with scp, then `sudo cp`. */
  async writeFile(remotePath: string, content: string): Promise<void> {
    const command = `sudo tee ${shellWords([remotePath])} >/dev/null`;
    const result = await sshRun(this.target, this.user, command, content, COMMAND_TIMEOUT_MS);
    if (result.exitCode !== 0) throw new ProvisioningError(`writing ${quoted(remotePath)} on the control host ${this.name} failed: ${quoted(result.output.trim())}`);
  }

  /**
   * Streams the file open on `fd` into `command`'s stdin (never held in memory); killed after
   * `timeoutMs` (exit 124). Not retried: half an image cannot be sent again from where it broke.
   */
  pipe(fd: number, command: string, timeoutMs: number): Promise<SshResult> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-ssh-'));
    const configFile = path.join(dir, 'config');
    fs.writeFileSync(configFile, sshConfigText(), { mode: 0o600 });
    return new Promise<SshResult>((resolve) => {
      const child = spawn('ssh', [...sshArgs(this.target, this.user, configFile), command], { stdio: [fd, 'pipe', 'pipe'] });
      let output = '';
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      child.on('error', (error) => resolve({ exitCode: SSH_FAILED, output: error.message }));
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ exitCode: timedOut ? TIMED_OUT : (code ?? SSH_FAILED), output });
      });
    }).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
  }
}
