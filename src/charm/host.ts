/** Everything the charm acts on, as one object: real on a unit, rooted in a temp dir in tests. */
import * as path from 'node:path';
import { runCommand, type Runner } from '../common/exec';
import { readHostCapacity, type HostCapacity } from './limits';
import { hostPathsFromEnv, type HostPaths } from './paths';
import { portIsFree } from './ports';
import { runtimeNodePath } from './runtime';
import { Supervisor, type SupervisorControl } from './supervisor';
import { TemplateRenderer } from './templates';

export interface Host {
  readonly paths: HostPaths;
  readonly charmDir: string;
  /** The Node.js the runtime wrappers run: the charm's own (runtimeNodePath says which). */
  readonly nodePath: string;
  readonly run: Runner;
  readonly renderer: TemplateRenderer;
  readonly supervisor: SupervisorControl;
  readonly isPortFree: (port: number) => Promise<boolean>;
  readonly capacity: () => HostCapacity;
}

export function createHost(options: { paths: HostPaths; charmDir: string; run?: Runner; nodePath?: string; supervisor?: SupervisorControl; isPortFree?: (port: number) => Promise<boolean>; capacity?: () => HostCapacity }): Host {
  const run = options.run ?? runCommand;
  const renderer = new TemplateRenderer(options.charmDir);
  return {
    paths: options.paths,
    charmDir: options.charmDir,
    nodePath: options.nodePath ?? runtimeNodePath(options.charmDir, options.paths.sandbox),
    run,
    renderer,
    supervisor: options.supervisor ?? new Supervisor(options.paths, run, renderer),
    isPortFree: options.isPortFree ?? portIsFree,
    capacity: options.capacity ?? (() => readHostCapacity()),
  };
}

export function hostFromEnv(env: NodeJS.ProcessEnv, charmDir: string): Host {
  return createHost({ paths: hostPathsFromEnv(env), charmDir: path.resolve(charmDir) });
}
