/**
 * A job's `secrets` become environment variables of its test phase's command, and of nothing
 * else: upstream's server resolves `test_data.secrets` alone, and its connector gives them to
 * the test commands. The agent's other phases run the operator's commands outside any sandbox;
 * they get no secret, so no name (OPENSSL_CONF, LD_PRELOAD, whatever a program reads at start)
 * can reach them. In the sandboxed test phase, bubblewrap sets the secrets for the command from
 * a pipe, so neither it nor the programs that start it have them; with the sandbox off the test
 * phase is the job's own commands on the host, as upstream, and they are its environment.
 *
 * What still applies to a name: upstream's own pattern, the agent's TESTFLINGER_* namespace, and
 * no variable the agent gives the phase itself (its environment and conf values, which the
 * connector reads). Refused secrets are dropped with a note rather than failing the job, as
 * the server turns a secret it cannot resolve into an empty value; their values are masked.
 */

/** The phase that gets secrets. */
export const SECRETS_PHASE = 'test';

/** Upstream's server's pattern for a secret's name: a POSIX-portable variable name. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const AGENT_PREFIX = 'TESTFLINGER_';

export interface RefusedSecret {
  name: string;
  reason: string;
}

/** Why the secret may not be set for the test phase, or undefined when it may. */
export function secretRefusal(name: string, value: string, agentVariables: ReadonlySet<string>): string | undefined {
  if (!ENV_NAME.test(name)) return 'not a valid environment variable name';
  if (name.startsWith(AGENT_PREFIX)) return `reserved: ${AGENT_PREFIX}* variables belong to the agent`;
  if (agentVariables.has(name)) return 'reserved: the agent sets it for every phase';
  if (value.includes('\0')) return 'its value holds a NUL byte';
  return undefined;
}

/** The secrets the test phase may get, and the ones dropped with why. */
export function splitSecrets(secrets: Record<string, string>, agentVariables: ReadonlySet<string>): { allowed: Record<string, string>; refused: RefusedSecret[] } {
  const allowed: Record<string, string> = {};
  const refused: RefusedSecret[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    const reason = secretRefusal(name, value, agentVariables);
    if (reason) refused.push({ name, reason });
    else allowed[name] = value;
  }
  return { allowed, refused };
}

/** bubblewrap's `--args` input: `--setenv NAME VALUE` per secret, NUL-separated. */
export function sandboxSecretArgs(secrets: Record<string, string>): Buffer {
  return Buffer.from(Object.entries(secrets).map(([name, value]) => `--setenv\0${name}\0${value}\0`).join(''), 'utf8');
}
