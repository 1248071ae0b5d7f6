/** Upstream's boot loops: a pause first, then a look, until the look says so or the time is up. */
import type { PhaseContext } from '../../phases';
import { pollUntil } from '../../steps';

export async function waitUntil<T>(ctx: PhaseContext, look: () => Promise<T>, done: (value: T) => boolean, timing: { seconds: number; pauseSeconds: number }): Promise<{ value: T; done: boolean }> {
  const pausedLook = async () => {
    await ctx.sleep(timing.pauseSeconds * 1000);
    return look();
  };
  return pollUntil(ctx, pausedLook, done, { seconds: timing.seconds, everySeconds: 0 });
}
