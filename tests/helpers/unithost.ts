/**
 * A unit-mode test host: the charm's unit code paths (no AGENT_HOST_ROOT: apt-get, useradd,
 * chown, the wrapper that gives each agent its user and cgroup, Debian's supervisord.conf and
 * socket, `systemctl ... supervisor`) run for real, inside private mount, PID and network
 * namespaces, so the real machine is untouched. Every path the charm writes is a tmpfs there (or
 * an overlay whose writes land in tmpfs); only systemctl and apt-get are stand-ins
 * (tests/fixtures/unit-host). Cgroups are the machine's: each host gets one of its own under the
 * test's, removed when it stops. Needs root.
 *
 *   const host = await UnitHost.start({ config, keep: [repo.dir] });
 *   await host.hook('install');
 *   host.exec(['supervisorctl', 'status']); host.execAs('tf-agent-1', ['id', '-u']);
 *   host.readFile('/var/lib/testflinger-agent/home/agent-1/.ssh/id_rsa'); host.stat(...); host.writeFile(path, text, { user: 'tf-agent-1' });
 *   await host.stop();
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildSync } from 'esbuild';
import execa from 'execa';
import { hostPaths } from '../../src/charm/paths';
import { failureText } from '../../src/common/exec';
import { parseStatus, type ProgramStatus } from '../../src/charm/supervisor';
import type { DevServerOptions } from '../../src/devserver/server';
import { charmSpecFrom, defaultUnitName } from '../../src/hooktools/charmspec';
import { createEmulatedUnit, dispatchEvent, type DispatchResult, type EmulatedUnit } from '../../src/hooktools/emulator';
import { eventually, onCleanup, repoRoot, tempDir } from './tmp';
import { actionOutcome, hookOrThrow } from './hookrun';
import { b64 } from './charm';
import { ConfigRepo } from './gitrepo';
import { sshKeygen } from './sshd';

const FIXTURES = path.join(repoRoot, 'tests', 'fixtures', 'unit-host');
const READY_WAIT_MS = 15_000;
const EXIT_WAIT_MS = 10_000;
/** Longest a command inside may take (the systemctl stand-in waits up to 30 s for a stop). */
const EXEC_TIMEOUT_MS = 60_000;
/** Where the stand-ins record their calls, inside the namespace. */
const STATE_DIR = '/run/unithost';
/** Debian's root PATH, as Juju gives hooks; the test machine's node dir last, for dispatch to find. */
const UNIT_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin', path.dirname(process.execPath)].join(':');
const NAMESPACES = ['--mount', '--pid', '--net'];
/** The fresh tmpfs init.sh mounts (the rest it overlays): what lies under them must be kept. */
const TMPFS_DIRS = ['/tmp', '/home', '/srv', '/var/log', '/etc/supervisor', '/run', '/var/run'];

/** Each unit host's cgroup is named after the test process and a counter: cgroups are shared with the machine. */
let cgroupsMade = 0;
const CGROUP_GONE_WAIT_MS = 5000;

/** The cgroup v2 directory this test process is in, or undefined where there is none. */
function ownCgroupDir(): string | undefined {
  const mount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => / - cgroup2 /.test(l))?.split(' ')[4];
  const own = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'))?.slice(3);
  return mount && own !== undefined ? path.join(mount, own) : undefined;
}

/**
 * A cgroup for one unit host, under this process's own: systemctl's stand-in starts supervisord
 * in it (as systemd starts a service in its own), so the agents' cgroups are that host's alone.
 * Undefined where no cgroup v2 can be made (the agents then fall back, as they log).
 */
function makeHostCgroup(): string | undefined {
  const parent = ownCgroupDir();
  if (!parent) return undefined;
  const dir = path.join(parent, `unithost-${process.pid}-${++cgroupsMade}`);
  try {
    fs.mkdirSync(dir);
    return dir;
  } catch {
    return undefined;
  }
}

/** Removes a cgroup tree, deepest first, once its processes are gone (bounded wait). */
async function removeCgroupTree(dir: string): Promise<void> {
  const deadline = Date.now() + CGROUP_GONE_WAIT_MS;
  const removeAll = (d: string, depth: number): void => {
    if (depth > 8) return;
    for (const child of fs.readdirSync(d, { withFileTypes: true })) if (child.isDirectory()) removeAll(path.join(d, child.name), depth + 1);
    fs.rmdirSync(d);
  };
  for (;;) {
    try {
      if (fs.existsSync(dir)) removeAll(dir, 0);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`cannot remove the unit host's cgroup ${dir}: ${(error as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function hiddenInside(p: string): boolean {
  return TMPFS_DIRS.some((dir) => p === dir || p.startsWith(`${dir}/`));
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface FileStat {
  uid: number;
  gid: number;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  /** stat's words: 'regular file', 'directory', 'symbolic link', ... */
  type: string;
}

export interface UnitHostOptions {
  config?: Record<string, unknown>;
  /**
   * Paths the charm must reach inside (config repos in /tmp): /tmp, /home, /srv... are fresh
   * tmpfs there, so these are bound back in. They must exist before start; their contents stay
   * live both ways. The unit's own dir, the checkout and node are kept without asking.
   */
  keep?: string[];
  charmDir?: string;
}

/** Why unit-mode tests cannot run here, or undefined when they can. */
export function unitHostUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'unit-mode tests need root (they mount tmpfs and run useradd in private namespaces)';
  const probe = spawnSync('unshare', [...NAMESPACES, '--fork', 'true'], { encoding: 'utf8' });
  if (probe.error) return `unit-mode tests need unshare (util-linux): ${probe.error.message}`;
  if (probe.status !== 0) return `unit-mode tests need private namespaces, which unshare could not make: ${probe.stderr.trim()}`;
  return undefined;
}

/**
 * describe() for tests that need a unit host: skipped, with the reason printed, where one cannot
 * be made; with UNIT_MODE_REQUIRED=1 (CI, as root) that is a failure instead of a skip.
 */
export function describeOnUnitHost(name: string, tests: () => void): void {
  const reason = unitHostUnavailable();
  if (!reason) return describe(name, tests);
  if (process.env['UNIT_MODE_REQUIRED']) throw new Error(`UNIT_MODE_REQUIRED is set, but ${reason}`);
  console.warn(`skipping "${name}": ${reason}`);
  describe.skip(`${name} (skipped: ${reason})`, tests);
}

function parseStat(line: string): FileStat {
  const [uid = '', gid = '', mode = '', ...type] = line.trim().split(' ');
  return { uid: Number(uid), gid: Number(gid), mode: parseInt(mode, 8), type: type.join(' ') };
}

export class UnitHost {
  /** The charm's paths on a unit (root `/`), as seen inside the namespace. */
  readonly paths = hostPaths('/');
  readonly unit: EmulatedUnit;
  private constructor(
    /** `unshare`, whose child holds the namespaces as their init. */
    private readonly holder: ChildProcess,
    /** The namespaces' init as the real machine numbers it: dispatch and exec enter its namespaces. */
    readonly initPid: number,
    readonly dir: string,
    readonly charmDir: string,
    config: Record<string, unknown>,
    /** This host's cgroup (supervisord's is `supervisor.service` in it), when one could be made. */
    readonly cgroup: string | undefined,
  ) {
    this.unit = createEmulatedUnit(path.join(dir, 'unit'), path.join(repoRoot, 'dist', 'hooktool.js'), charmDir, { config });
  }

  static async start(options: UnitHostOptions = {}): Promise<UnitHost> {
    const dir = tempDir('unithost');
    const charmDir = options.charmDir ?? charmLayoutWithNode(path.join(dir, 'charm'));
    // The checkout (dispatch, dist/) and node may live under /home on a CI runner.
    const needed = [dir, ...(options.keep ?? []), repoRoot, charmDir, path.dirname(process.execPath)].map((p) => path.resolve(p));
    const keep = needed.filter(hiddenInside).filter((p, i, all) => !all.some((other, j) => (other === p && j < i) || p.startsWith(`${other}/`)));
    const cgroup = makeHostCgroup();
    // --kill-child: if unshare dies, so does the namespace's init, and with it every process there.
    const holder = spawn('unshare', [...NAMESPACES, '--propagation', 'private', '--fork', '--mount-proc', '--kill-child', path.join(FIXTURES, 'init.sh'), FIXTURES, ...keep], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...(cgroup ? { UNITHOST_CGROUP: cgroup } : {}) },
    });
    const initPid = await UnitHost.waitReady(holder);
    const host = new UnitHost(holder, initPid, dir, charmDir, options.config ?? {}, cgroup);
    onCleanup(() => host.stop());
    return host;
  }

  /** Waits (bounded) for init.sh to say "ready"; returns the host pid of the namespace's init. */
  private static waitReady(holder: ChildProcess): Promise<number> {
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const fail = (why: string) => {
        clearTimeout(timer);
        holder.kill('SIGKILL');
        reject(new Error(`unit host did not start: ${why}; ${err.trim()}`));
      };
      const timer = setTimeout(() => fail(`no "ready" within ${READY_WAIT_MS / 1000}s`), READY_WAIT_MS);
      holder.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      holder.once('exit', (code) => fail(`init exited with ${code}`));
      holder.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (!out.includes('ready\n')) return;
        clearTimeout(timer);
        holder.removeAllListeners('exit');
        // unshare --fork: its only child is the namespace's init.
        const children = fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim();
        resolve(Number(children.split(' ')[0]));
      });
    });
  }

  private nsenter(wd = '/'): string[] {
    return ['--target', String(this.initPid), ...NAMESPACES, `--wd=${wd}`, '--'];
  }

  /** Runs a command as root inside the namespaces, with a root login's plain environment. */
  async exec(argv: readonly string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<ExecResult> {
    const env = { PATH: UNIT_PATH, HOME: '/root', LANG: 'C.UTF-8', ...options.env };
    // Input goes through a file that root opens as stdin before the command runs: a command that
    // exits without reading it (a refused redirect) must fail with its own words, not EPIPE.
    const inputFile = options.input === undefined ? undefined : path.join(this.dir, `stdin-${process.hrtime.bigint()}`);
    if (inputFile) fs.writeFileSync(inputFile, options.input ?? '', { mode: 0o600 });
    const command = inputFile ? ['sh', '-c', 'exec "$@" < "$0"', inputFile, ...argv] : argv;
    const result = await execa('nsenter', [...this.nsenter(), ...command], {
      env,
      extendEnv: false,
      reject: false,
      stripFinalNewline: false,
      timeout: EXEC_TIMEOUT_MS,
      stdin: 'ignore',
    }).finally(() => inputFile && fs.rmSync(inputFile, { force: true }));
    // Output as written (readFile gives a file whole); no exit code: it never ran or was killed.
    return { stdout: result.stdout, stderr: result.stderr || failureText(result), exitCode: result.exitCode ?? -1 };
  }

  /** Runs a command as `user` (ids, groups, HOME, SHELL from the namespace's passwd), no root left. */
  execAs(user: string, argv: readonly string[], options: { input?: string } = {}): Promise<ExecResult> {
    return this.exec(['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--reset-env', '--', ...argv], options);
  }

  /**
   * Starts a long-running command (a dev server) inside the namespaces as root and returns at
   * once; its output goes to /run/unithost/<name>.log, and it ends with the namespaces.
   */
  async background(name: string, argv: readonly string[]): Promise<string> {
    const log = `${STATE_DIR}/${name}.log`;
    await this.check(['sh', '-c', `"$@" >${log} 2>&1 </dev/null &`, 'sh', ...argv]);
    return log;
  }

  /**
   * A dev server (src/devserver, any options: auth too) on the namespace's own 127.0.0.1, for
   * the agents there; bundled for the occasion, as dist/devserver.js takes no auth options.
   */
  async devServer(options: DevServerOptions & { port: number }): Promise<string> {
    const script = path.join(this.dir, 'devserver.js');
    const entry = `import { DevServer } from './src/devserver/server';\nvoid new DevServer(${JSON.stringify(options)}).start().then((url) => console.log('listening on', url));\n`;
    buildSync({ stdin: { contents: entry, resolveDir: repoRoot, loader: 'ts' }, bundle: true, platform: 'node', format: 'cjs', outfile: script, logLevel: 'error' });
    const log = await this.background('devserver', [process.execPath, script]);
    await eventually(async () => /listening on/.test((await this.exec(['cat', log])).stdout), `the dev server in the unit host (${log})`);
    return `http://127.0.0.1:${options.port}`;
  }

  /** exec, failing with the command's stderr when it exits non-zero. */
  async check(argv: readonly string[]): Promise<string> {
    const result = await this.exec(argv);
    if (result.exitCode !== 0) throw new Error(`${argv.join(' ')} failed (${result.exitCode}) in the unit host: ${result.stderr.trim()}`);
    return result.stdout;
  }

  readFile(file: string): Promise<string> {
    return this.check(['cat', '--', file]);
  }

  /** Writes a file inside, as root or as `user` (so with that user's rights). */
  async writeFile(file: string, content: string, options: { user?: string } = {}): Promise<void> {
    const argv = ['sh', '-c', 'cat >"$1"', 'sh', file];
    const result = options.user ? await this.execAs(options.user, argv, { input: content }) : await this.exec(argv, { input: content });
    if (result.exitCode !== 0) throw new Error(`cannot write ${file} in the unit host: ${result.stderr.trim()}`);
  }

  async exists(file: string): Promise<boolean> {
    return (await this.exec(['test', '-e', file])).exitCode === 0;
  }

  /** The file itself, not what a symlink points at (lstat). */
  async stat(file: string): Promise<FileStat> {
    return parseStat(await this.check(['stat', '--format=%u %g %a %F', '--', file]));
  }

  async userIds(user: string): Promise<{ uid: number; gid: number }> {
    return { uid: Number(await this.check(['id', '-u', user])), gid: Number(await this.check(['id', '-g', user])) };
  }

  /** Real, effective, saved and filesystem uid of a process (a pid as the namespace numbers it). */
  async processUids(pid: number): Promise<number[]> {
    const status = await this.readFile(`/proc/${pid}/status`);
    return (/^Uid:\s+(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).map(Number);
  }

  /** The pids of the processes running as `user` (by their /proc entries' owner, no procps needed). */
  async pidsOf(user: string): Promise<number[]> {
    const { uid } = await this.userIds(user);
    const out = await this.check(['find', '/proc', '-mindepth', '1', '-maxdepth', '1', '-name', '[0-9]*', '-uid', String(uid), '-printf', '%f\n']);
    return out.split('\n').filter(Boolean).map(Number);
  }

  /** supervisorctl status, as an operator types it on the unit (Debian's conf, its socket). */
  async programs(): Promise<Map<string, ProgramStatus>> {
    // Exit 3 means some program is not RUNNING: the table is still the answer.
    const { stdout } = await this.exec(['supervisorctl', 'status']);
    return new Map(parseStatus(stdout).map((p) => [p.name, p]));
  }

  /** supervisord's pid from its pid file, or undefined when there is none. */
  async supervisordPid(): Promise<number | undefined> {
    const { stdout, exitCode } = await this.exec(['cat', this.paths.supervisorPidFile]);
    return exitCode === 0 ? Number(stdout.trim()) : undefined;
  }

  /** Each call made to a stand-in (`systemctl`, `apt-get`), its arguments as one line. */
  async standInCalls(tool: 'systemctl' | 'apt-get'): Promise<string[]> {
    const { stdout } = await this.exec(['cat', `${STATE_DIR}/${tool}.log`]);
    return stdout.split('\n').filter(Boolean);
  }

  setConfig(change: Record<string, unknown>): void {
    this.unit.update((s) => Object.assign(s.config, change));
  }

  /**
   * Runs `hooks/<name>` or `actions/<name>` through the charm's real dispatch, inside the
   * namespaces, with Juju's environment and no AGENT_HOST_ROOT: a shim charm dir's dispatch
   * enters the namespaces and execs the real one.
   */
  dispatch(dispatchPath: string, options: { actionParams?: Record<string, unknown> } = {}): Promise<DispatchResult> {
    return dispatchEvent(this.unit, dispatchPath, {
      charmDir: this.shimCharmDir(),
      // The shim has no metadata.yaml: the unit is the real charm's.
      unitName: defaultUnitName(charmSpecFrom(this.charmDir), 'UnitHost'),
      env: { JUJU_CHARM_DIR: this.charmDir, CHARM_DIR: this.charmDir, PATH: `${this.unit.binDir}:${UNIT_PATH}` },
      ...options,
    });
  }

  private shimCharmDir(): string {
    const shim = path.join(this.dir, 'shim-charm');
    const dispatch = path.join(shim, 'dispatch');
    if (!fs.existsSync(dispatch)) {
      fs.mkdirSync(shim, { recursive: true });
      fs.writeFileSync(dispatch, `#!/bin/sh\nexec nsenter ${this.nsenter('"$JUJU_CHARM_DIR"').join(' ')} "$JUJU_CHARM_DIR/dispatch"\n`, { mode: 0o755 });
    }
    return shim;
  }

  /** Runs a hook and fails the test with the charm's last logs if it exits non-zero. */
  async hook(name: string): Promise<DispatchResult> {
    return hookOrThrow(this.unit, name, () => this.dispatch(`hooks/${name}`));
  }

  async action(name: string, params: Record<string, unknown> = {}) {
    return actionOutcome(this.unit, () => this.dispatch(`actions/${name}`, { actionParams: params }));
  }

  /**
   * A real sshd on the namespace's own 127.0.0.1:`port`, a "device" that lets `root` in with
   * `authorizedKey`. Everything it needs lives in /run/unithost/sshd, inside.
   */
  async sshd(port: number, authorizedKey: string): Promise<void> {
    const dir = `${STATE_DIR}/sshd`;
    await this.check(['sh', '-c', `mkdir -p -m 0700 ${dir} /run/sshd && ssh-keygen -q -t ed25519 -N '' -f ${dir}/host_key`]);
    await this.writeFile(`${dir}/authorized_keys`, authorizedKey);
    const config = [
      `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${dir}/host_key`, `PidFile ${dir}/sshd.pid`,
      `AuthorizedKeysFile ${dir}/authorized_keys`, 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password', 'StrictModes no', 'UsePAM no', 'AllowUsers root', '',
    ].join('\n');
    await this.writeFile(`${dir}/sshd_config`, config);
    const log = await this.background('sshd', ['/usr/sbin/sshd', '-D', '-e', '-f', `${dir}/sshd_config`]);
    await eventually(async () => /Server listening/.test((await this.exec(['cat', log])).stdout), `sshd on 127.0.0.1:${port} in the unit host (${log})`);
  }

  /**
   * A login user with a home of its own, as Ubuntu's images have `ubuntu` (init.sh removes the
   * machine's): `useradd --create-home`, the home given `homeMode` (Ubuntu 24.04 makes them 0750).
   */
  async addLoginUser(name: string, homeMode = 0o750): Promise<void> {
    await this.check(['useradd', '--create-home', '--shell', '/bin/bash', '--', name]);
    await this.check(['chmod', homeMode.toString(8), `/home/${name}`]);
  }

  /** A call to a dev server inside the namespace (its loopback is the namespace's own); JSON answers parsed. */
  async api(server: string, method: 'GET' | 'POST', route: string, body?: unknown): Promise<unknown> {
    const script = `fetch(process.argv[1], { method: '${method}', headers: { 'content-type': 'application/json' }, ...(process.argv[2] ? { body: process.argv[2] } : {}) })
      .then((r) => r.text()).then((t) => process.stdout.write(t))`;
    const text = await this.check(['node', '-e', script, `${server}${route}`, ...(body === undefined ? [] : [JSON.stringify(body)])]);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }

  get status(): { status: string; message: string } | null {
    return this.unit.state().unitStatus;
  }

  /**
   * Ends the namespaces: init exits when its stdin closes, and the kernel kills supervisord and
   * every agent with it; the tmpfs go with the last process. Bounded; SIGKILL if it hangs.
   */
  async stop(): Promise<void> {
    if (this.holder.exitCode === null && this.holder.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.holder.once('exit', () => resolve()));
      this.holder.stdin?.end();
      const timer = setTimeout(() => this.holder.kill('SIGKILL'), EXIT_WAIT_MS);
      await exited;
      clearTimeout(timer);
    }
    if (this.cgroup) await removeCgroupTree(this.cgroup);
  }
}

/**
 * The layout of an unpacked .charm, made of links into this checkout, with this test's Node as
 * the shipped `node/bin/node`: a unit's dispatch runs only the charm's own node.
 */
export function charmLayoutWithNode(dir: string): string {
  fs.mkdirSync(path.join(dir, 'node', 'bin'), { recursive: true });
  for (const entry of ['dispatch', 'dist', 'templates', 'tf-cmd-scripts', 'metadata.yaml', 'config.yaml', 'actions.yaml']) {
    fs.symlinkSync(path.join(repoRoot, entry), path.join(dir, entry));
  }
  fs.symlinkSync(process.execPath, path.join(dir, 'node', 'bin', 'node'));
  return dir;
}

/**
 * A lab as an operator hands it to the charm: a config repo with these agents (name → conf) in
 * `lab1`, and a fresh lab key. `keep`: what the unit host must reach (UnitHostOptions.keep).
 */
export function labCharmConfig(agents: Readonly<Record<string, string>>): { config: Record<string, unknown>; keep: string[]; publicKey: string } {
  const repo = new ConfigRepo('lab1');
  for (const [name, conf] of Object.entries(agents)) repo.addAgent(name, conf);
  repo.commit('the lab');
  const keys = sshKeygen(path.join(tempDir('labkey'), 'lab_key'));
  const config = {
    'config-repo': repo.url,
    'config-dir': 'lab1',
    'ssh-private-key': b64(fs.readFileSync(keys.privateKey, 'utf8')),
    'ssh-public-key': b64(`${keys.publicKey}\n`),
  };
  return { config, keep: [repo.dir], publicKey: keys.publicKey };
}
