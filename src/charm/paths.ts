/**
 * Every host path the charm touches, from one root: `/` on a unit, AGENT_HOST_ROOT in a sandbox.
 * Only where files go: how the host is driven (users, packages, supervisord) is driver.ts's
 * (docs/architecture.md, "Host paths" and "The seam").
 */
import * as path from 'node:path';

export interface HostPaths {
  readonly root: string;
  readonly configsDir: string;
  readonly supervisorDir: string;
  readonly supervisordConf: string;
  readonly programDir: string;
  /** supervisord's limits drop-in on a unit (not a program file). */
  readonly limitsFile: string;
  readonly supervisorSocket: string;
  readonly supervisorPidFile: string;
  readonly supervisorLogDir: string;
  readonly binDir: string;
  /** The agents' shared home in a sandbox root (a unit gives each agent its own: agentHome). */
  readonly homeDir: string;
  readonly sshDir: string;
  readonly sshPrivateKey: string;
  readonly sshPublicKey: string;
  readonly sshConfig: string;
  readonly runtimeDir: string;
  readonly runtimeVersionsDir: string;
  readonly runtimeCurrent: string;
  readonly runtimeBinDir: string;
  readonly agentProgram: string;
  readonly connectorProgram: string;
  readonly offlineMarkerDir: string;
  readonly stateDir: string;
  readonly stateFile: string;
  readonly tokenFile: string;
  /** The root wrapper that puts an agent in its own cgroup and becomes its user (docs/isolation.md). */
  readonly containedProgram: string;
  /** The charm's copy of bwrap, the one path its AppArmor profile allows user namespaces for. */
  readonly sandboxProgram: string;
  readonly apparmorProfile: string;
  /** systemd drop-in giving supervisord's cgroup to it (Delegate=yes), so agents get cgroups of their own. */
  readonly delegationDropIn: string;
  programFile(agent: string): string;
  /** An agent user's home (root's; holds its root-owned ~/.ssh). */
  agentHome(agent: string): string;
  /** Where an agent keeps its run, log and results directories by default (its user's, 0700). */
  agentStateDir(agent: string): string;
}

export function hostPaths(root = '/'): HostPaths {
  const at = (p: string) => path.join(root, p);
  const runtimeDir = at('/srv/testflinger-agent');
  const runtimeBinDir = path.join(runtimeDir, 'bin');
  const programDir = at('/etc/supervisor/conf.d');
  const stateDir = at('/var/lib/testflinger-agent-host');
  return Object.freeze({
    root,
    configsDir: at('/srv/agent-configs'),
    supervisorDir: at('/etc/supervisor'),
    supervisordConf: at('/etc/supervisor/supervisord.conf'),
    programDir,
    limitsFile: path.join(programDir, 'zz-testflinger-limits.conf'),
    supervisorSocket: at('/var/run/supervisor.sock'),
    supervisorPidFile: at('/var/run/supervisord.pid'),
    supervisorLogDir: at('/var/log/supervisor'),
    binDir: at('/usr/local/bin'),
    homeDir: at('/home/ubuntu'),
    sshDir: at('/home/ubuntu/.ssh'),
    sshPrivateKey: at('/home/ubuntu/.ssh/id_rsa'),
    sshPublicKey: at('/home/ubuntu/.ssh/id_rsa.pub'),
    sshConfig: at('/home/ubuntu/.ssh/config'),
    runtimeDir,
    runtimeVersionsDir: path.join(runtimeDir, 'versions'),
    runtimeCurrent: path.join(runtimeDir, 'current'),
    runtimeBinDir,
    agentProgram: path.join(runtimeBinDir, 'testflinger-agent'),
    connectorProgram: path.join(runtimeBinDir, 'testflinger-device-connector'),
    offlineMarkerDir: at('/tmp'),
    stateDir,
    stateFile: path.join(stateDir, 'state.json'),
    tokenFile: at('/var/lib/testflinger-agent/refresh_token'),
    containedProgram: path.join(runtimeBinDir, 'testflinger-agent-contained'),
    sandboxProgram: at('/usr/lib/testflinger-agent-host/bwrap'),
    apparmorProfile: at('/etc/apparmor.d/testflinger-bwrap'),
    delegationDropIn: at('/etc/systemd/system/supervisor.service.d/zz-testflinger-delegate.conf'),
    programFile: (agent: string) => path.join(programDir, `${agent}.conf`),
    agentHome: (agent: string) => at(`/var/lib/testflinger-agent/home/${agent}`),
    agentStateDir: (agent: string) => at(`/srv/testflinger/${agent}`),
  });
}

/** The root from the environment: AGENT_HOST_ROOT when set (the sandbox contract), else `/`. */
export function hostPathsFromEnv(env: NodeJS.ProcessEnv): HostPaths {
  const root = env['AGENT_HOST_ROOT'];
  if (!root) return hostPaths('/');
  const resolved = path.resolve(root);
  // Paths reach program files and scripts, which carry only plain characters.
  if (!/^\/[A-Za-z0-9._/+-]*$/.test(resolved)) throw new Error('AGENT_HOST_ROOT must be a path of letters, digits and ._/+-');
  return hostPaths(resolved);
}
