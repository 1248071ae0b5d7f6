/**
 * The `maas` CLI, logged in on this host under the device's profile (`maas_user`), as upstream
 * drives it. Arguments go to the program as argv (no shell); each value was checked by a pattern.
 */
import { quoted } from '../../../common/text';
import { ConnectorError } from '../../errors';
import type { PhaseContext } from '../../phases';
import { runCommand } from '../../steps';
import type { Maas2Config } from './config';

export class MaasError extends ConnectorError {
  override readonly name = 'MaasError';
}

/** MAAS's answers are longer than most untrusted text: keep enough of them to be useful, on one line. */
const ANSWER_SHOWN = 300;

function answer(text: string): string {
  return quoted(text, ANSWER_SHOWN);
}

/** One `maas` call may not hang a phase. */
const CALL_TIMEOUT_MS = 120_000;
/** Upstream retries a failed call three times, pausing 10 s, 20 s, 40 s. */
const RETRIES = 3;

export interface MachineRead {
  status_name?: string;
  ip_addresses?: string[];
  hostname?: string;
}

export class MaasCli {
  constructor(
    private readonly ctx: PhaseContext,
    private readonly config: Maas2Config,
  ) {}

  /** Runs `maas <profile> <words...>` once; fails with what the CLI said. */
  async once(words: readonly string[]): Promise<string> {
    const result = await runCommand(['maas', this.config.maas_user, ...words], { timeoutMs: CALL_TIMEOUT_MS });
    if (result.exitCode !== 0) {
      const why = result.timedOut ? `no answer within ${CALL_TIMEOUT_MS / 1000}s` : result.output.trim();
      throw new MaasError(`maas ${words.join(' ')} failed (exit ${result.exitCode}): ${answer(why)}`);
    }
    return result.stdout;
  }

  /** Runs a call, retrying with a doubling pause; fails with every attempt's error. */
  async call(words: readonly string[]): Promise<string> {
    const errors: string[] = [];
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(words);
      } catch (error) {
        errors.push((error as Error).message);
        if (attempt >= RETRIES) throw new MaasError(`${errors.length} attempts failed: ${errors.join(' | ')}`);
        const pause = this.config.maas_retry_backoff_seconds * 2 ** attempt;
        this.ctx.print(`MAAS: ${(error as Error).message}; trying again in ${pause}s`);
        await this.ctx.sleep(pause * 1000);
      }
    }
  }

  async json<T>(words: readonly string[], retry = true): Promise<T> {
    const text = retry ? await this.call(words) : await this.once(words);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new MaasError(`maas ${words.join(' ')} printed no JSON: ${answer(text.trim())}`);
    }
  }

  async machine(): Promise<MachineRead> {
    return this.json<MachineRead>(['machine', 'read', this.config.node_id]);
  }

  async status(): Promise<string> {
    return (await this.machine()).status_name ?? 'Unknown';
  }
}
