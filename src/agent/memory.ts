/**
 * The agent's own memory settings. Most agents sit idle for hours, one process per device, so
 * what an idle agent keeps private is what a lab pays many times over (bench/results.md shows
 * where it goes, mapping by mapping).
 */

/**
 * glibc malloc settings the charm's wrapper starts the agent with: one arena (the V8 and libuv
 * threads would each dirty an arena of their own) and free memory at the top of the heap given
 * back at once. Set for the agent only: its job commands do not inherit them (see jobEnv).
 */
export const AGENT_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '1',
  MALLOC_TRIM_THRESHOLD_: '0',
  MALLOC_TOP_PAD_: '0',
};

/**
 * The agent's environment as its jobs get it: without the agent's own malloc settings (the
 * wrapper sets them whatever the unit's environment held, so none of them is the operator's).
 */
export function jobEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && !Object.hasOwn(AGENT_MALLOC_ENV, e[0])));
}

/**
 * V8's gc(), defined when node runs with --expose-gc (the charm's wrapper passes it). The
 * 'last-resort' flavour also hands the pages V8 keeps pooled for reuse back to the system.
 */
type Gc = (options: { type: 'major'; execution: 'sync'; flavor?: 'last-resort' }) => void;

/** First reduction once start-up's garbage is done with, then one every so often. */
export const FIRST_REDUCTION_MS = 30_000;
export const REDUCTION_EVERY_MS = 10 * 60_000;
/**
 * Full collections per reduction. With --bytecode-old-age=1 a function's bytecode is dropped at
 * the second collection that finds it unused (it is compiled again if it ever runs), with
 * --compact-on-every-full-gc the pages it leaves are emptied, and the last collection, a
 * last-resort one, gives them back (without it the compaction leaves the heap bigger).
 */
export const COLLECTIONS_PER_REDUCTION = 3;

/**
 * Runs a few full collections now and then. V8 collects when the heap grows, which an idle
 * agent's heap hardly does, so start-up's garbage and the bytecode of code that only ran once
 * (config parsing, the first poll, the last job) would otherwise stay for hours. A reduction
 * costs a few milliseconds of CPU; without --expose-gc there is no gc() and nothing is scheduled.
 */
export function scheduleMemoryReduction(gc: Gc | undefined = (globalThis as { gc?: Gc }).gc): { stop(): void } {
  if (typeof gc !== 'function') return { stop() {} };
  const reduce = () => {
    for (let i = 1; i < COLLECTIONS_PER_REDUCTION; i++) gc({ type: 'major', execution: 'sync' });
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  };
  let periodic: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    reduce();
    periodic = setInterval(reduce, REDUCTION_EVERY_MS).unref();
  }, FIRST_REDUCTION_MS).unref();
  return {
    stop() {
      clearTimeout(first);
      clearInterval(periodic);
    },
  };
}
