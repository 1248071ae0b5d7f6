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

/** V8's gc(), defined when node runs with --expose-gc (the charm's wrapper passes it). */
type Gc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/** First reduction once start-up's garbage is done with, then one every so often. */
export const FIRST_REDUCTION_MS = 30_000;
export const REDUCTION_EVERY_MS = 10 * 60_000;
/**
 * Runs a last-resort collection now and then: V8 collects when the heap grows, which an idle
 * agent's heap hardly does, so start-up's garbage and the bytecode of code that ran once (config
 * parsing, the first poll, the last job) would otherwise stay for hours. A last-resort collection
 * is several full ones in a row: with --bytecode-old-age=1 bytecode unused across two of them is
 * dropped (it is compiled again if it ever runs), --compact-on-every-full-gc empties the pages it
 * leaves, and the pages are handed back rather than pooled. About 0.07 s of CPU each (measured:
 * one does as well as three); without --expose-gc there is no gc() and nothing is scheduled.
 */
export function scheduleMemoryReduction(gc: Gc | undefined = (globalThis as { gc?: Gc }).gc): { stop(): void } {
  if (typeof gc !== 'function') return { stop() {} };
  const reduce = () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
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
