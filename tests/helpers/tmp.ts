import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh temp dir per call, removed after the test file (short path: unix sockets live here). */
const made: string[] = [];
/** Run before the dirs go: daemons started in them must stop while their sockets still exist. */
const beforeRemoval: (() => Promise<void> | void)[] = [];

export function onCleanup(stop: () => Promise<void> | void): void {
  beforeRemoval.push(stop);
}
export function tempDir(prefix = 'tf'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  made.push(dir);
  return dir;
}
afterAll(async () => {
  for (const stop of beforeRemoval.splice(0)) await stop();
  if (process.env['KEEP_TMP']) return;
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** Polls until the check passes (bounded), for effects that cross processes. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export const repoRoot = path.resolve(__dirname, '..', '..');
