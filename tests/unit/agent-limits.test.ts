import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { agentLimitsFromEnv, chooseContainment, rlimitPrefix } from '../../src/agent/containment';
import { CharmConfigError, parseCharmConfig } from '../../src/charm/config';
import { apparmorProfile } from '../../src/charm/isolation';
import { withAgentLimits } from '../../src/charm/limits';
import { hostPaths } from '../../src/charm/paths';
import { tempDir } from '../helpers/tmp';

const options = { 'config-repo': '/srv/repo', 'config-dir': 'lab1' };

function refusal(extra: Record<string, unknown>): string {
  try {
    parseCharmConfig({ ...options, ...extra });
  } catch (error) {
    if (error instanceof CharmConfigError) return error.message;
    throw error;
  }
  return 'accepted';
}

describe('agent-max-processes and agent-max-memory', () => {
  it('default to 2048 processes and 4G, which reach each agent through its environment', () => {
    const config = parseCharmConfig(options);
    expect(config['agent-max-processes']).toBe(2048);
    expect(config['agent-max-memory']).toBe(4 * 1024 ** 3);
    const run = withAgentLimits({ commandPrefix: [], home: '/h', env: { HOME: '/h' } }, config);
    expect(run.env).toEqual({ HOME: '/h', TESTFLINGER_MAX_PROCESSES: '2048', TESTFLINGER_MAX_MEMORY: '4294967296' });
    expect(agentLimitsFromEnv(run.env)).toEqual({ processes: 2048, memoryBytes: 4294967296 });
  });

  it('take sizes in binary units, or max for no memory limit', () => {
    expect(parseCharmConfig({ ...options, 'agent-max-memory': '512M' })['agent-max-memory']).toBe(512 * 1024 ** 2);
    const unlimited = parseCharmConfig({ ...options, 'agent-max-memory': 'max' });
    expect(unlimited['agent-max-memory']).toBeNull();
    expect(withAgentLimits({ commandPrefix: [], home: '/h', env: {} }, unlimited).env).toEqual({ TESTFLINGER_MAX_PROCESSES: '2048' });
  });

  it.each([
    [{ 'agent-max-processes': 10 }, 'agent-max-processes must be at least 64'],
    [{ 'agent-max-processes': 100.5 }, 'agent-max-processes must be a whole number'],
    [{ 'agent-max-processes': '100' }, 'agent-max-processes must be a number'],
    [{ 'agent-max-memory': '4 G' }, 'agent-max-memory must be a size such as 4G, 512M or 4294967296 (bytes), or max for no limit'],
    [{ 'agent-max-memory': '100M' }, 'agent-max-memory must be at least 256M (the agent itself needs about 100M)'],
    [{ 'agent-max-memory': '-1' }, 'agent-max-memory must be a size such as 4G, 512M or 4294967296 (bytes), or max for no limit'],
  ])('a bad value is refused, naming the option: %j', (extra, message) => {
    expect(refusal(extra)).toBe(message);
  });

  it('the agent adds prlimit to its phases only for limits it does not have already (a unit wrapper set them)', () => {
    const unlimited = () => Number.POSITIVE_INFINITY;
    expect(rlimitPrefix({ processes: 64, memoryBytes: 1024 }, unlimited)).toEqual(['prlimit', '--nproc=64:64', '--data=1024:1024', '--']);
    expect(rlimitPrefix({ processes: 64, memoryBytes: 1024 }, (line) => (line === 'Max processes' ? 64 : Number.POSITIVE_INFINITY))).toEqual(['prlimit', '--data=1024:1024', '--']);
    expect(rlimitPrefix({ processes: 64 }, () => 64)).toEqual([]);
    expect(agentLimitsFromEnv({ TESTFLINGER_MAX_PROCESSES: '1e3', TESTFLINGER_MAX_MEMORY: '-5' })).toEqual({});
  });
});

/**
 * AppArmor 4's parser (apparmor_parser -Q -K: parse and compile, load nothing) where one is at
 * hand: APPARMOR_PARSER names it, or an apparmor_parser of version 4 or later on PATH.
 */
function apparmor4Parser(): string[] | undefined {
  const named = process.env['APPARMOR_PARSER'];
  if (named) return [named];
  const version = spawnSync('apparmor_parser', ['--version'], { encoding: 'utf8' });
  return !version.error && /version ([4-9]|\d\d)\./.test(version.stdout) ? ['apparmor_parser'] : undefined;
}

describe("the charm's AppArmor profile for its bwrap", () => {
  const profile = apparmorProfile(hostPaths('/'));

  it('allows user namespaces to bwrap alone: what it runs moves to a child profile that denies them', () => {
    expect(profile).toMatch(/^profile testflinger-bwrap \/usr\/lib\/testflinger-agent-host\/bwrap flags=\(attach_disconnected,mediate_deleted\) \{$/m);
    expect(profile).toMatch(/^ {2}userns,$/m);
    expect(profile).toMatch(/^ {2}cx \/\*\* -> job,$/m);
    const job = profile.slice(profile.indexOf('profile job'));
    expect(job).toMatch(/^ {4}deny userns,$/m);
    expect(job).toMatch(/^ {4}deny capability,$/m);
    expect(profile).not.toMatch(/unconfined/);
  });

  const parser = apparmor4Parser();
  (parser ? it : it.skip)('is accepted by AppArmor 4 apparmor_parser -Q -K', () => {
    const file = path.join(tempDir('apparmor'), 'testflinger-bwrap');
    fs.writeFileSync(file, profile);
    const [program, ...args] = parser as string[];
    const result = spawnSync(program as string, [...args, '-Q', '-K', file], { encoding: 'utf8' });
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
  });
});

describe('a phase that hits one of its agent limits is told so', () => {
  const scopeWith = (env: Record<string, string>) => chooseContainment({ ...env, TESTFLINGER_CONTAINMENT: 'process-group' }).openPhase(false);

  it('a refused fork, even split between two chunks of output, names the process limit', () => {
    const scope = scopeWith({ TESTFLINGER_MAX_PROCESSES: '64' });
    scope.observe?.('line one\nsh: 1: Cannot f');
    scope.observe?.('ork\n');
    expect(scope.limitNote?.()).toBe("NOTE: this phase hit its process limit (64 processes for this agent, the charm's agent-max-processes): a fork was refused");
  });

  it('a refused allocation names the memory limit, in its own units', () => {
    const scope = scopeWith({ TESTFLINGER_MAX_MEMORY: String(512 * 1024 ** 2) });
    scope.observe?.('MemoryError\n');
    expect(scope.limitNote?.()).toBe("NOTE: this phase may have hit its memory limit (512M for this agent, the charm's agent-max-memory): an allocation was refused");
  });

  it('no note for a phase that hit nothing, nor for a limit the charm did not set', () => {
    const quiet = scopeWith({ TESTFLINGER_MAX_PROCESSES: '64', TESTFLINGER_MAX_MEMORY: '1073741824' });
    quiet.observe?.('all fine\n');
    expect(quiet.limitNote?.()).toBeUndefined();
    const memoryOnly = scopeWith({ TESTFLINGER_MAX_MEMORY: '1073741824' });
    memoryOnly.observe?.('bash: fork: Resource temporarily unavailable\n');
    expect(memoryOnly.limitNote?.()).toBeUndefined();
  });
});
