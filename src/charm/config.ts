/** The charm's options (config.yaml), validated once; an error names the option and why. */
import { z } from 'zod';

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const PRIVATE_KEY = /^-----BEGIN (?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----\r?\n[\s\S]+\r?\n-----END (?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----\s*$/;
const PUBLIC_KEY = /^(?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}(?: .*)?\s*$/;

function decodeBase64(value: string): string | undefined {
  const compact = value.replace(/\s+/g, '');
  if (!BASE64.test(compact) || compact.length % 4 !== 0) return undefined;
  return Buffer.from(compact, 'base64').toString('utf8');
}

const base64Key = (pattern: RegExp, what: string) =>
  z.string().default('').transform((value, ctx) => {
    if (value.trim() === '') return '';
    const text = decodeBase64(value);
    if (text === undefined) {
      ctx.addIssue({ code: 'custom', message: 'is not valid base64' });
      return z.NEVER;
    }
    if (!pattern.test(text)) {
      ctx.addIssue({ code: 'custom', message: `does not decode to ${what}` });
      return z.NEVER;
    }
    return text.endsWith('\n') ? text : `${text}\n`;
  });

// Juju leaves out options whose value is null, so a missing key reads as empty.
const required = (what: string) => z.string().default('').pipe(z.string().trim().min(1, { message: `is not set (${what})` }));

export const charmConfigSchema = z.object({
  'ssh-private-key': base64Key(PRIVATE_KEY, 'a PEM or OpenSSH private key'),
  'ssh-public-key': base64Key(PUBLIC_KEY, 'an SSH public key'),
  'ssh-config': z.string().default(''),
  'config-repo': required('the git repository of agent configs'),
  'config-branch': z.string().trim().min(1, { message: 'is empty' }).default('main'),
  'config-dir': required('the directory of this host\'s agents in config-repo').refine(
    (dir) => !dir.split('/').includes('..') && !dir.startsWith('/'),
    { message: 'must be a relative path inside config-repo' },
  ),
  'testflinger-server': z
    .string()
    .trim()
    .default('')
    .refine((url) => url === '' || /^https?:\/\/[^\s/]+/.test(url), { message: 'must be a URL starting with http:// or https://' }),
  'agent-source-repo': z.string().trim().default(''),
  'credentials-secret': z
    .string()
    .trim()
    .default('')
    .refine((id) => id === '' || /^secret:[A-Za-z0-9/?=-]+$/.test(id), { message: 'must be a Juju secret URI (secret:...)' }),
}).superRefine((config, ctx) => {
  if (config['credentials-secret'] && !config['testflinger-server']) {
    ctx.addIssue({ code: 'custom', path: ['credentials-secret'], message: 'needs testflinger-server, the server that issues the token' });
  }
});

export type CharmConfig = z.output<typeof charmConfigSchema>;

export class CharmConfigError extends Error {
  override readonly name = 'CharmConfigError';
  constructor(readonly option: string, readonly reason: string) {
    super(`${option} ${reason}`);
  }
}

/** The first problem wins, phrased for an operator reading `juju status`. */
export function parseCharmConfig(raw: Readonly<Record<string, unknown>>): CharmConfig {
  const result = charmConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const option = String(issue?.path[0] ?? 'config');
  const reason = issue?.code === 'invalid_type' ? `must be a ${issue.expected}` : (issue?.message ?? 'is invalid');
  throw new CharmConfigError(option, reason);
}
