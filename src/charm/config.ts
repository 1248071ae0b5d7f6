/**
 * The charm's options (config.yaml), validated once per event; an error names the option and
 * why, never echoes the value (it may be a secret), and stays short enough for `juju status`.
 */
import { z } from 'zod';
import {
  BASE64_BODY,
  KEY_TYPE,
  ValueError,
  checkGitRef,
  checkKnownHosts,
  checkRelativeDir,
  checkServerUrl,
  checkText,
  parseGitRemote,
  type GitRemote,
} from './values';
import { MAX_PROCESSES_RANGE, parseMemorySize } from './limits';
import { mqttConfigIssues, mqttConfigShape } from './mqtt';

const MAX_KEY_BASE64 = 32 * 1024;
const MAX_SSH_CONFIG = 64 * 1024;

function decodeBase64(value: string): string | undefined {
  const compact = value.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 !== 0) return undefined;
  return Buffer.from(compact, 'base64').toString('utf8');
}

/** PEM or OpenSSH armour, checked line by line (linear in the key's length). */
function isPrivateKey(text: string): boolean {
  if (/[\u0000-\u0009\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return false;
  const lines = text.trim().split(/\r?\n/);
  const begin = /^-----BEGIN ((?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?)PRIVATE KEY-----$/.exec(lines[0] ?? '');
  const end = /^-----END ((?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?)PRIVATE KEY-----$/.exec(lines[lines.length - 1] ?? '');
  return !!begin && !!end && begin[1] === end[1] && lines.length >= 3;
}

/** One line: `type base64 [comment]`. */
function isPublicKey(text: string): boolean {
  const line = text.replace(/\r?\n$/, '');
  if (/[\u0000-\u001f\u007f]/.test(line)) return false;
  const [type = '', body = ''] = line.split(' ', 2);
  return KEY_TYPE.test(type) && BASE64_BODY.test(body);
}

const base64Key = (isKey: (text: string) => boolean, what: string) =>
  z.string().default('').transform((value, ctx) => {
    if (value.trim() === '') return '';
    if (value.length > MAX_KEY_BASE64) {
      ctx.addIssue({ code: 'custom', message: `is longer than ${MAX_KEY_BASE64} characters` });
      return z.NEVER;
    }
    const text = decodeBase64(value);
    if (text === undefined) {
      ctx.addIssue({ code: 'custom', message: 'is not valid base64' });
      return z.NEVER;
    }
    if (!isKey(text)) {
      ctx.addIssue({ code: 'custom', message: `does not decode to ${what}` });
      return z.NEVER;
    }
    return text.endsWith('\n') ? text : `${text}\n`;
  });

/** Runs one of the strict checks of values.ts as a zod step, turning its refusal into an issue. */
function checked<T>(check: (value: string) => T) {
  return (value: string, ctx: z.RefinementCtx): T => {
    try {
      return check(value);
    } catch (error) {
      if (!(error instanceof ValueError)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message });
      return z.NEVER;
    }
  };
}

// Juju leaves out options whose value is null, so a missing key reads as empty.
const required = (what: string) => z.string().default('').pipe(z.string().trim().min(1, { message: `is not set (${what})` }));
const optional = () => z.string().trim().default('');
const orEmpty = <T>(check: (value: string) => T) => (value: string): T | undefined => (value === '' ? undefined : check(value));
/** A Juju secret option: empty, or `secret:ID` / `secret://<model-uuid>/ID`. */
const secretUri = () =>
  optional().refine((id) => id === '' || /^secret:(?:\/\/[A-Za-z0-9-]{1,64}\/)?[A-Za-z0-9]{1,64}$/.test(id), {
    message: 'must be a Juju secret URI (secret:...)',
  });

export const charmConfigSchema = z.object({
  'ssh-private-key': base64Key(isPrivateKey, 'a PEM or OpenSSH private key'),
  'ssh-public-key': base64Key(isPublicKey, 'an SSH public key'),
  'ssh-config': z.string().default('').transform(checked((v) => checkText(v, MAX_SSH_CONFIG))),
  'config-repo': required('the git repository of agent configs').transform(checked(parseGitRemote)),
  'config-repo-known-hosts': z.string().default('').transform(checked(checkKnownHosts)),
  'config-branch': z.string().trim().min(1, { message: 'is empty' }).default('main').transform(checked(checkGitRef)),
  'config-dir': required('the directory of this host\'s agents in config-repo').transform(checked(checkRelativeDir)),
  'testflinger-server': optional().transform(checked((v) => (v === '' ? '' : checkServerUrl(v)))),
  'test-sandbox': z.boolean().default(true),
  'agent-max-processes': z
    .number()
    .int()
    .min(MAX_PROCESSES_RANGE.min, { message: `must be at least ${MAX_PROCESSES_RANGE.min}` })
    .max(MAX_PROCESSES_RANGE.max, { message: `must be at most ${MAX_PROCESSES_RANGE.max}` })
    .default(2048),
  'agent-max-memory': z.string().trim().default('4G').transform((value, ctx) => {
    try {
      return parseMemorySize(value) ?? null;
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  }),
  'agent-source-repo': optional().transform(checked(orEmpty(parseGitRemote))),
  'credentials-secret': secretUri(),
  ...mqttConfigShape,
  'mqtt-credentials-secret': secretUri(),
}).superRefine((config, ctx) => {
  if (config['credentials-secret'] && !config['testflinger-server']) {
    ctx.addIssue({ code: 'custom', path: ['credentials-secret'], message: 'needs testflinger-server, the server that issues the token' });
  }
  for (const { option, message } of mqttConfigIssues(config)) ctx.addIssue({ code: 'custom', path: [option], message });
});

export type CharmConfig = z.output<typeof charmConfigSchema>;
export type { GitRemote };

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
  const reason = issue?.code === 'invalid_type' ? `must be a ${issue.expected === 'integer' ? 'whole number' : issue.expected}` : (issue?.message ?? 'is invalid');
  throw new CharmConfigError(option, reason);
}
