/** Everything the charm acts on, as one object: real on a unit, rooted in a temp dir in tests. */
import * as path from 'node:path';
import { runCommand, type Runner } from '../common/exec';
import { createDriver, driverKindFromEnv, type DriverKind, type HostDriver } from './driver';
import { readHostCapacity, type HostCapacity } from './limits';
import { hostPathsFromEnv, type HostPaths } from './paths';
import { portIsFree } from './ports';
import { runtimeNodePath } from './runtime';
import { Supervisor, type SupervisorControl } from './supervisor';
import { TemplateRenderer } from './templates';

export interface Host {
  readonly paths: HostPaths;
  /** How this host is driven (unit or sandbox), chosen once. */
  readonly driver: HostDriver;
  readonly charmDir: string;
  /** The Node.js the runtime wrappers run: the charm's own (runtimeNodePath says which). */
  readonly nodePath: string;
  readonly run: Runner;
  readonly renderer: TemplateRenderer;
  readonly supervisor: SupervisorControl;
  readonly isPortFree: (port: number) => Promise<boolean>;
  readonly capacity: () => HostCapacity;
}

export interface HostOptions {
  paths: HostPaths;
  /** How the host is driven: 'unit' on a machine, 'sandbox' under AGENT_HOST_ROOT (and in tests). */
  driver: DriverKind;
  charmDir: string;
  run?: Runner;
  nodePath?: string;
  supervisor?: SupervisorControl;
  isPortFree?: (port: number) => Promise<boolean>;
  capacity?: () => HostCapacity;
}

export function createHost(options: HostOptions): Host {
  const run = options.run ?? runCommand;
  const renderer = new TemplateRenderer(options.charmDir);
  const driver = createDriver(options.driver, options.paths, run, renderer, options.charmDir);
  return {
    paths: options.paths,
    driver,
    charmDir: options.charmDir,
    nodePath: options.nodePath ?? runtimeNodePath(options.charmDir, driver.kind === 'sandbox'),
    run,
    renderer,
    supervisor: options.supervisor ?? new Supervisor(options.paths.supervisorSocket, driver.supervisord),
    isPortFree: options.isPortFree ?? portIsFree,
    capacity: options.capacity ?? (() => readHostCapacity()),
  };
}

export function hostFromEnv(env: NodeJS.ProcessEnv, charmDir: string): Host {
  return createHost({ paths: hostPathsFromEnv(env), driver: driverKindFromEnv(env), charmDir: path.resolve(charmDir) });
}
