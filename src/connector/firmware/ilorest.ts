/**
 * HPE's `ilorest` on this host, talking to a server's BMC (iLO), as upstream drives it: each
 * command a process of its own (`ilorest --nologo --cache-dir=<dir> <command>`), the session kept
 * in the cache directory between them. The BMC's password reaches ilorest's argv at login, as
 * upstream passes it (docs/security.md); it is masked in everything this connector prints.
 */
import { quoted } from '../../common/text';
import { runCommand, type CommandResult } from '../steps';
import { FirmwareUpdateError } from './error';

export interface Bmc {
  address: string;
  user: string;
  password: string;
}

/** Upstream's limit for an ilorest command. */
const COMMAND_TIMEOUT_MS = 30_000;
const MASK = '********';

export class Ilorest {
  constructor(
    private readonly bmc: Bmc,
    /** A private directory (0700) of this run: ilorest keeps the BMC session there. */
    private readonly cacheDir: string,
  ) {}

  /** Text with the BMC's password masked. */
  mask(text: string): string {
    return this.bmc.password === '' ? text : text.split(this.bmc.password).join(MASK);
  }

  /** Runs one ilorest command; its output (password masked) whatever its exit code. */
  async run(words: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandResult> {
    const result = await runCommand(['ilorest', '--nologo', `--cache-dir=${this.cacheDir}`, ...words], { timeoutMs });
    return { ...result, output: this.mask(result.output), stdout: this.mask(result.stdout) };
  }

  /** Runs a command whose failure ends the update; returns its stdout. */
  async must(words: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const result = await this.run(words, timeoutMs);
    if (result.exitCode !== 0) {
      const why = result.timedOut ? `no answer within ${timeoutMs / 1000}s` : result.output.trim();
      throw new FirmwareUpdateError(`ilorest ${this.mask(words.join(' '))} failed (exit ${result.exitCode}): ${quoted(why)}`);
    }
    return result.stdout;
  }

  /** Upstream's `login <address> -u <user> -p <password>`. */
  login(): Promise<string> {
    return this.must(['login', this.bmc.address, '-u', this.bmc.user, '-p', this.bmc.password]);
  }

  /** Logs in without failing the update (while the BMC reboots, say); true when it answered. */
  async tryLogin(): Promise<boolean> {
    return (await this.run(['login', this.bmc.address, '-u', this.bmc.user, '-p', this.bmc.password])).exitCode === 0;
  }

  logout(): Promise<string> {
    return this.must(['logout']);
  }
}
