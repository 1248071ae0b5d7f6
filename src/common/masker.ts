/**
 * Secrets out of text before it goes anywhere: the agent's job output (a stream, where a secret
 * may span two chunks), the charm's action results and status, the connector's quoted refusals.
 * One mask everywhere, so an operator learns one sign for "a secret was here".
 */
export const SECRET_MASK = '****';

export class SecretMasker {
  private readonly secrets: string[];
  private readonly carryLength: number;
  private carry = '';

  constructor(secrets: readonly string[]) {
    // Longest first, so a secret containing another is masked whole.
    this.secrets = [...new Set(secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
    this.carryLength = Math.max(0, ...this.secrets.map((s) => s.length - 1));
  }

  mask(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join(SECRET_MASK);
    return out;
  }

  /** Returns what is safe to emit now; holds back a tail that could be the start of a secret. */
  push(text: string): string {
    if (this.secrets.length === 0) return text;
    const masked = this.mask(this.carry + text);
    const cut = Math.max(0, masked.length - this.carryLength);
    this.carry = masked.slice(cut);
    return masked.slice(0, cut);
  }

  end(): string {
    const rest = this.mask(this.carry);
    this.carry = '';
    return rest;
  }
}

/** Text with every one of `secrets` masked (all of it at once: no stream, nothing held back). */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  return new SecretMasker(secrets).mask(text);
}
