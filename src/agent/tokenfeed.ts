/**
 * The agent's access token for the one connector that acts on the server as the agent: multi,
 * whose provision and cleanup phases create and cancel child jobs. The token goes down a pipe
 * (never argv, an environment value, or a file): written once the phase starts and again each
 * time the agent's own token is renewed, so a phase that outlives one token keeps a valid one.
 * The refresh token never leaves the agent. No token file: the pipe is closed at once, and the
 * connector sends no credentials, as upstream's.
 */
import type { Writable } from 'node:stream';
import type { Phase } from './config';

/** How often the agent's current token is compared with the one last fed. */
export const TOKEN_FEED_CHECK_MS = 10_000;

/** Whether a phase gets the token: multi's provision and cleanup only (the test phase never does). */
export function phaseGetsServerToken(provisionType: string | undefined, phase: Phase): boolean {
  return provisionType === 'multi' && (phase === 'provision' || phase === 'cleanup');
}

/** Feeds `current()`'s token into `pipe` while the phase runs; the returned function stops it and closes the pipe. */
export function feedAccessToken(pipe: Writable, current: () => Promise<string | undefined>, onError: (error: Error) => void, checkMs = TOKEN_FEED_CHECK_MS): () => void {
  let fed: string | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const stop = () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    pipe.end();
  };
  const check = async () => {
    let token: string | undefined;
    let failed = false;
    try {
      token = await current();
    } catch (error) {
      failed = true; // the server may be back at the next check
      onError(error as Error);
    }
    if (stopped) return;
    if (!failed && token === undefined && fed === undefined) return stop();
    if (token !== undefined && token !== fed) {
      fed = token;
      pipe.write(`${token}\n`);
    }
    timer = setTimeout(() => void check(), checkMs);
  };
  pipe.on('error', () => undefined); // the phase closed its end: nothing more to feed
  void check();
  return stop;
}
