/**
 * update-testflinger branch=...: the runtime built from a ref of the project's source. The branch
 * is untrusted code: on a unit its `npm ci` (with no lifecycle scripts) and `npm run build` run as
 * a locked system user of their own, in a PID namespace that ends with the build, in a directory
 * root made for it; root then takes only the two bundles, read as that user, without following a
 * link, capped in size (docs/security.md, "Building the runtime from a branch"). A sandbox root
 * has no users: there the build runs as the charm does.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommandError, type Runner } from '../common/exec';
import { readFileNoFollow } from '../common/fsutil';
import { asUser, type FileOwner } from '../common/privileges';
import { lockAgentUser, readIdFile } from './agentusers';
import { npmCommand, RUNTIME_PROGRAMS, RuntimeError } from './runtime';
import { checkGitRef, ValueError } from './values';

/**
 * The user builds run as. Not `tf-<something>`: that is an agent's user, and an agent named
 * `build` would otherwise share it.
 */
export const BUILD_USER = 'testflinger-build';
const GIT_TIMEOUT_MS = 5 * 60_000;
const NPM_CI_TIMEOUT_MS = 15 * 60_000;
const BUILD_TIMEOUT_MS = 5 * 60_000;
/** Today's bundles are 0.2-0.4 MB; a bundle past this is not one. */
export const BUNDLE_MAX_BYTES = 32 * 1024 * 1024;
/**
 * npm's proxy settings on a unit behind one, from Juju's variables (then the classic ones): the
 * only thing of the charm's environment the build gets, through its npmrc (never argv: a proxy
 * URL may hold a password).
 */
const PROXY_SETTINGS: readonly (readonly [string, readonly string[]])[] = [
  ['proxy', ['JUJU_CHARM_HTTP_PROXY', 'http_proxy', 'HTTP_PROXY']],
  ['https-proxy', ['JUJU_CHARM_HTTPS_PROXY', 'https_proxy', 'HTTPS_PROXY']],
  ['noproxy', ['JUJU_CHARM_NO_PROXY', 'no_proxy', 'NO_PROXY']],
];

/**
 * Refuses a ref that is not a plain branch, tag or commit name (git check-ref-format's rules, and
 * a narrower alphabet), so nothing from the action can reach git as an option.
 */
export function validateRef(ref: string): string {
  try {
    if (ref.length === 0) throw new ValueError('it is empty');
    return checkGitRef(ref);
  } catch (error) {
    if (!(error instanceof ValueError)) throw error;
    throw new RuntimeError(`refusing ref ${JSON.stringify(ref.slice(0, 80))}: it ${error.message.replace(/^it /, '')}`);
  }
}

/**
 * The build user, made the first time (a system user with its own group, in no other, no home,
 * no shell) and locked like a removed agent's (expired: no PAM login); returns its ids.
 */
export async function ensureBuildUser(run: Runner, passwdFile: string): Promise<FileOwner> {
  const existing = readIdFile(passwdFile).get(BUILD_USER);
  if (existing) return existing;
  await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--', BUILD_USER]);
  await lockAgentUser(run, BUILD_USER);
  const made = readIdFile(passwdFile).get(BUILD_USER);
  if (!made) throw new RuntimeError(`useradd made no ${BUILD_USER} user in ${passwdFile}`);
  return made;
}

/** Where a source build clones from: a URL without credentials, how to show it, git's environment. */
export interface SourceRepo {
  url: string;
  display: string;
  /** From the charm's git access: credentials and SSH settings live here, never in argv. */
  gitEnv: Record<string, string>;
}

export interface BuildOptions {
  /** The user npm runs as (ensureBuildUser's); undefined in a sandbox root: as the charm. */
  builder: FileOwner | undefined;
  /** The node npm runs on (and the build's `node`). */
  nodePath?: string;
}

/** The commit a validated ref names in a fresh clone: a branch of origin, a tag, or a commit. */
async function resolveRef(run: Runner, checkout: string, ref: string, env: Record<string, string>): Promise<string> {
  for (const candidate of [`refs/remotes/origin/${ref}`, `refs/tags/${ref}`, ref]) {
    const found = await run('git', ['-C', checkout, 'rev-parse', '--verify', '--quiet', '--end-of-options', `${candidate}^{commit}`], { env, okExitCodes: [1, 128], timeoutMs: GIT_TIMEOUT_MS });
    if (found.exitCode === 0) return found.stdout.trim();
  }
  throw new RuntimeError(`no branch, tag or commit named ${ref}`);
}

/** Root clones (the credentials are root's) and checks out the commit; no code of the branch runs. */
async function checkOut(run: Runner, source: SourceRepo, ref: string, checkout: string, env: Record<string, string>): Promise<string> {
  try {
    await run('git', ['clone', '--quiet', '--no-checkout', '--', source.url, checkout], { env, timeoutMs: GIT_TIMEOUT_MS });
    const commit = await resolveRef(run, checkout, ref, env);
    await run('git', ['-C', checkout, 'checkout', '--quiet', '--detach', commit], { env, timeoutMs: GIT_TIMEOUT_MS });
    return commit;
  } catch (error) {
    throw new RuntimeError(`cannot check out ${ref} of ${source.display}: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
}

type NpmCommand = ReturnType<typeof npmCommand>;

/** How npm is run: as the build user in a PID namespace of its own, with only `env`; or, in a sandbox, as we are. */
interface NpmRunner {
  run(args: readonly string[], timeoutMs: number): Promise<unknown>;
}

/** The build's npmrc: the proxy settings of the charm's environment (a value on one line, or none). */
export function buildNpmrc(env: NodeJS.ProcessEnv): string {
  const lines = PROXY_SETTINGS.flatMap(([key, names]) => {
    const value = names.map((n) => env[n]).find((v) => v !== undefined && v !== '');
    return value !== undefined && /^[\x21-\x7e]+$/.test(value) ? [`${key}=${value}`] : [];
  });
  return lines.map((l) => `${l}\n`).join('');
}

/**
 * On a unit: `unshare --pid --kill-child` ends every process the build left behind when npm
 * ends (or is killed at its timeout); setpriv drops to the build user with no groups and no new
 * privileges; `env -i` starts it from an environment that holds nothing of root's (no git
 * credentials, no root npmrc: npm's HOME, npmrc and cache are the build user's own directory).
 */
function unitNpm(run: Runner, npm: NpmCommand, nodePath: string, builder: FileOwner, home: string, checkout: string): NpmRunner {
  // Written before any process of the build user exists: nothing can have been planted there.
  const npmrc = fs.openSync(path.join(home, '.npmrc'), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeFileSync(npmrc, buildNpmrc(process.env));
    fs.fchownSync(npmrc, builder.uid, builder.gid);
  } finally {
    fs.closeSync(npmrc);
  }
  const env = { HOME: home, PATH: `${path.dirname(nodePath)}:/usr/bin:/bin`, CI: 'true', npm_config_cache: path.join(home, '.npm'), npm_config_update_notifier: 'false' };
  const prefix = ['--pid', '--fork', '--kill-child', '--', ...asBuilder(builder), 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
  return { run: (args, timeoutMs) => run('unshare', [...prefix, npm.file, ...npm.args, ...args], { cwd: checkout, timeoutMs }) };
}

function sandboxNpm(run: Runner, npm: NpmCommand, env: Record<string, string>, checkout: string): NpmRunner {
  return { run: (args, timeoutMs) => run(npm.file, [...npm.args, ...args], { cwd: checkout, env: { ...env, CI: 'true' }, timeoutMs }) };
}

/** setpriv's arguments that make the rest of the command line run as the build user, with no groups and no new privileges. */
function asBuilder(builder: FileOwner): string[] {
  return ['setpriv', `--reuid=${builder.uid}`, `--regid=${builder.gid}`, '--clear-groups', '--no-new-privs', '--'];
}

/**
 * The node and npm the build user can run: the charm's own when that user can reach them (asked
 * of `test` run as that user: access(2) from root would answer for root), else copies in the
 * build's directory (a charm directory only root may enter).
 */
async function toolsFor(run: Runner, builder: FileOwner, nodePath: string, npm: NpmCommand, toolsDir: string): Promise<{ nodePath: string; npm: NpmCommand }> {
  const [setpriv, ...args] = asBuilder(builder);
  const checks = ['-x', nodePath, '-a', '-x', npm.file, ...npm.args.flatMap((arg) => ['-a', '-r', arg])];
  const reachable = await run(setpriv as string, [...args, 'test', ...checks], { okExitCodes: [1], timeoutMs: GIT_TIMEOUT_MS });
  if (reachable.exitCode === 0) return { nodePath, npm };
  const npmDir = path.resolve(path.dirname(nodePath), '..', 'lib', 'node_modules', 'npm');
  const node = path.join(toolsDir, 'bin', 'node');
  fs.mkdirSync(path.dirname(node), { recursive: true, mode: 0o755 });
  fs.copyFileSync(nodePath, node);
  fs.chmodSync(node, 0o755);
  if (fs.existsSync(npmDir)) fs.cpSync(npmDir, path.join(toolsDir, 'lib', 'node_modules', 'npm'), { recursive: true, verbatimSymlinks: true });
  return { nodePath: node, npm: npmCommand(node) };
}

/** Why npm failed, without the command line (on a unit, the long unshare/setpriv/env prefix). */
function npmFailure(error: unknown): string {
  if (error instanceof CommandError && error.message.startsWith(error.command)) return error.message.slice(error.command.length + 1);
  return (error as Error).message;
}

/** A new directory, made by root and given to the build user. */
function builderDir(dir: string, builder: FileOwner): string {
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.chownSync(dir, builder.uid, builder.gid);
  return dir;
}

/**
 * The two bundles, copied out of the build into a directory of root's: read as the build user
 * (a link it planted leads nowhere it could not read itself), never through a final link, only
 * regular files, at most BUNDLE_MAX_BYTES each. Nothing else of the build is taken.
 */
function takeBundles(distDir: string, builder: FileOwner | undefined, bundleDir: string): void {
  fs.mkdirSync(bundleDir, { mode: 0o755 });
  for (const program of RUNTIME_PROGRAMS) {
    const file = path.join(distDir, `${program}.js`);
    let content: Buffer;
    try {
      content = asUser(builder, () => readFileNoFollow(file, BUNDLE_MAX_BYTES));
    } catch (error) {
      throw new RuntimeError(`the build left no usable ${program}.js: ${(error as Error).message}`, { cause: error });
    }
    fs.writeFileSync(path.join(bundleDir, `${program}.js`), content, { mode: 0o644, flag: 'wx' });
  }
}

/**
 * Builds the runtime from a ref of the project's source: clone, `npm ci --ignore-scripts`, `npm
 * run build`, with the npm and node the charm runs on (the unit need not have either). Returns
 * the directory holding the built bundles (root's, inside workDir); the caller installs them and
 * removes workDir. workDir is root's: on a unit the build user gets a directory inside it.
 */
export async function buildRuntimeFromSource(run: Runner, source: SourceRepo, ref: string, workDir: string, options: BuildOptions): Promise<{ bundleDir: string; commit: string }> {
  validateRef(ref);
  const { builder } = options;
  let nodePath = options.nodePath ?? process.execPath;
  let npm = npmCommand(nodePath);
  const id = randomBytes(3).toString('hex');
  const checkout = path.join(workDir, `source-${id}`);
  // npm scripts call `node` by name: ours leads PATH.
  const env = { ...source.gitEnv, PATH: `${path.dirname(nodePath)}:${source.gitEnv['PATH'] ?? process.env['PATH'] ?? '/usr/bin:/bin'}` };
  const commit = await checkOut(run, source, ref, checkout, env);
  let npmRunner: NpmRunner;
  if (builder) {
    // The build user may pass through workDir to what it is given, and list nothing there.
    fs.chmodSync(workDir, 0o711);
    ({ nodePath, npm } = await toolsFor(run, builder, nodePath, npm, path.join(workDir, `tools-${id}`)));
    // Root wrote the checkout; only now, with no code of the branch run yet, it becomes the
    // build user's (chown -R -P never follows a link).
    await run('chown', ['-R', '-P', `${builder.uid}:${builder.gid}`, '--', checkout], { timeoutMs: GIT_TIMEOUT_MS });
    npmRunner = unitNpm(run, npm, nodePath, builder, builderDir(path.join(workDir, `home-${id}`), builder), checkout);
  } else {
    npmRunner = sandboxNpm(run, npm, env, checkout);
  }
  for (const [args, timeoutMs] of [
    [['ci', '--ignore-scripts', '--no-audit', '--no-fund'], NPM_CI_TIMEOUT_MS],
    [['run', 'build'], BUILD_TIMEOUT_MS],
  ] as const) {
    try {
      await npmRunner.run(args, timeoutMs);
    } catch (error) {
      throw new RuntimeError(`building ${ref} of ${source.display} failed: npm ${args.join(' ')} ${npmFailure(error)}`, { cause: error });
    }
  }
  const bundleDir = path.join(workDir, `bundles-${id}`);
  takeBundles(path.join(checkout, 'dist'), builder, bundleDir);
  return { bundleDir, commit };
}
