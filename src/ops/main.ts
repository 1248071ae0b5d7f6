import * as path from 'node:path';
import { HookToolBackend, type Backend } from './backend';
import { jujuContextFromEnv, type JujuContext } from './context';
import { runEvent, type CharmFactory } from './framework';

/**
 * The entry point of a charm bundle and the only place that decides the exit code.
 * The bundle lives in <charm>/dist/, so the charm dir defaults to its parent.
 */
export async function main(factory: CharmFactory, options: { backend?: Backend; context?: JujuContext } = {}) {
  const context =
    options.context ?? jujuContextFromEnv(process.env, process.argv[1] ?? '', path.resolve(__dirname, '..'));
  process.exitCode = await runEvent(factory, context, options.backend ?? new HookToolBackend());
}
