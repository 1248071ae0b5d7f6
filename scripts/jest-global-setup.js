/**
 * Jest's globalSetup: the tests that run the charm through dispatch, the agent and the hook-tool
 * emulator need the bundles in dist/. Builds them once (scripts/build.mjs) when dist/ is missing
 * or older than the sources, so `jest tests/unit` works on a fresh clone.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const SOURCES = ['src', 'bench', 'scripts/build.mjs', 'package-lock.json'];
/** Bounds the walk: the sources are a few hundred files. */
const MAX_FILES = 20_000;

/** The newest modification time under the given paths (files and dirs, recursively). */
function newestMtime(paths) {
  let newest = 0;
  let seen = 0;
  const stack = paths.map((p) => path.join(root, p));
  while (stack.length > 0 && seen++ < MAX_FILES) {
    const p = stack.pop();
    const stat = fs.statSync(p, { throwIfNoEntry: false });
    if (!stat) continue;
    newest = Math.max(newest, stat.mtimeMs);
    if (stat.isDirectory()) for (const entry of fs.readdirSync(p)) stack.push(path.join(p, entry));
  }
  return newest;
}

/** The oldest bundle in dist/, or 0 when there is none. */
function oldestBundle() {
  const dist = path.join(root, 'dist');
  const bundles = fs.existsSync(dist) ? fs.readdirSync(dist).filter((f) => f.endsWith('.js')) : [];
  if (bundles.length === 0) return 0;
  return Math.min(...bundles.map((f) => fs.statSync(path.join(dist, f)).mtimeMs));
}

module.exports = async function buildDistWhenStale() {
  if (oldestBundle() >= newestMtime(SOURCES)) return;
  process.stdout.write('\njest global setup: dist/ is missing or stale, building it (node scripts/build.mjs)\n');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
};
