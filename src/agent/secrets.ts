/**
 * A job's `secrets` become environment variables of its phases. The job's author is not trusted
 * with the host: a secret may not replace what decides which programs run and how (PATH, the
 * dynamic loader, shell start-up files, interpreters' search paths), the agent's own
 * TESTFLINGER_* settings, or any variable the agent itself gives its phases (its environment
 * and its conf values). Such secrets are dropped with a note rather than failing the job, as
 * the server itself turns a secret it cannot resolve into an empty value instead of a failure;
 * their values are still masked in the output.
 */

/** A POSIX-portable environment variable name. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED_PREFIXES = ['LD_', 'TESTFLINGER_', 'BASH_FUNC_'] as const;
const RESERVED_NAMES = new Set([
  'PATH', 'IFS', 'ENV', 'BASH_ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'CDPATH',
  'HOME', 'SHELL', 'USER', 'LOGNAME', 'TMPDIR', 'SSH_AUTH_SOCK', 'GIT_SSH', 'GIT_SSH_COMMAND',
  'NODE_OPTIONS', 'PYTHONPATH', 'PYTHONSTARTUP', 'PYTHONHOME', 'PERL5LIB', 'PERL5OPT', 'PERLLIB',
  'RUBYOPT', 'RUBYLIB', 'GCONV_PATH', 'LOCPATH', 'HOSTALIASES',
]);

export interface RefusedSecret {
  name: string;
  reason: string;
}

/** Why the secret may not be set for a phase, or undefined when it may. */
export function secretRefusal(name: string, agentVariables: ReadonlySet<string>): string | undefined {
  if (!ENV_NAME.test(name)) return 'not a valid environment variable name';
  if (RESERVED_NAMES.has(name)) return 'reserved: it controls how programs run on the agent host';
  const prefix = RESERVED_PREFIXES.find((p) => name.startsWith(p));
  if (prefix) return `reserved: ${prefix}* variables belong to the ${prefix === 'TESTFLINGER_' ? 'agent' : 'host'}`;
  if (agentVariables.has(name)) return 'reserved: the agent sets it for every phase';
  return undefined;
}

/** The secrets a phase may get, and the ones dropped with why. */
export function splitSecrets(secrets: Record<string, string>, agentVariables: ReadonlySet<string>): { allowed: Record<string, string>; refused: RefusedSecret[] } {
  const allowed: Record<string, string> = {};
  const refused: RefusedSecret[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    const reason = secretRefusal(name, agentVariables);
    if (reason) refused.push({ name, reason });
    else allowed[name] = value;
  }
  return { allowed, refused };
}
