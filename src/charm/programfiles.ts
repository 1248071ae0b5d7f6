/**
 * The agents' supervisord program files: rendered from the template, read back as supervisord's
 * INI reader would before they are written, and the charm's own told from others' by a marker.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AGENT_DIR_ENV, LOCK_SCOPE_ENV, OFFLINE_MARKER_DIR_ENV } from '../common/contract';
import { writeFileAtomic } from '../common/fsutil';
import type { AgentRun } from './driver';
import type { HostPaths } from './paths';
import type { TemplateRenderer } from './templates';

/** First line of every program file the charm writes; files without it are never touched. */
export const MANAGED_MARKER = '; Managed by the testflinger-agent-host charm';
export const PROGRAM_TEMPLATE = 'templates/supervisor-program.conf.hbs';

export interface ProgramSpec {
  name: string;
  confPath: string;
  agentDir: string;
  metricsPort: number;
  /** Extra environment for the agent, e.g. TESTFLINGER_SERVER. */
  extraEnv: Record<string, string>;
  /** The broker credentials file, when MQTT is on (the root wrapper opens it for the agent). */
  mqttCredentialsFile?: string;
}

export class ProgramFileError extends Error {
  override readonly name = 'ProgramFileError';
}

/**
 * A value for `environment=`. supervisord expands `%(name)s` and splits on commas and quotes with
 * its own rules, so a value that needs escaping is refused, never escaped (docs/security.md).
 */
function supervisorValue(key: string, value: string): string {
  if (!/^[A-Za-z0-9._~:/@+=-]*$/.test(value)) throw new ProgramFileError(`${key} has characters a program file cannot carry safely`);
  return `"${value}"`;
}

export function renderProgramFile(renderer: TemplateRenderer, paths: HostPaths, spec: ProgramSpec, run: AgentRun): string {
  if (!PROGRAM_NAME.test(spec.name)) throw new ProgramFileError('not a safe program name');
  const env: Record<string, string> = {
    ...run.env,
    PATH: [paths.binDir, paths.runtimeBinDir, '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':'),
    [AGENT_DIR_ENV]: spec.agentDir,
    [OFFLINE_MARKER_DIR_ENV]: paths.offlineMarkerDir,
    // One process per agent_id on this host, whatever each conf's logging_basedir says.
    [LOCK_SCOPE_ENV]: paths.root,
    ...spec.extraEnv,
  };
  const content = renderer.render(PROGRAM_TEMPLATE, {
    name: spec.name,
    commandPrefix: run.commandPrefix.map(checkedWord),
    agentProgram: checkedPath(paths.agentProgram),
    confPath: checkedPath(spec.confPath),
    metricsPort: spec.metricsPort,
    tokenFile: checkedPath(paths.tokenFile),
    mqttCredentialsFile: spec.mqttCredentialsFile === undefined ? undefined : checkedPath(spec.mqttCredentialsFile),
    directory: checkedPath(run.home),
    environment: Object.entries(env)
      .map(([k, v]) => `${checkedEnvName(k)}=${supervisorValue(k, v)}`)
      .join(','),
    user: run.user === undefined ? undefined : checkedWord(run.user),
  });
  verifyProgramFile(content, spec.name);
  return content;
}

const PROGRAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PROGRAM_KEYS = new Set(['command', 'directory', 'autostart', 'autorestart', 'exitcodes', 'startsecs', 'startretries', 'stopsignal', 'stopwaitsecs', 'redirect_stderr', 'stdout_logfile_maxbytes', 'stdout_logfile_backups', 'environment', 'user', 'killasgroup', 'stopasgroup']);

function checkedPath(value: string): string {
  if (!/^\/[A-Za-z0-9._/+-]*$/.test(value)) throw new ProgramFileError('a host path has characters a program file cannot carry safely');
  return value;
}

/** One word of `command=` (a path, a user, a cgroup name): supervisord splits it on spaces only. */
function checkedWord(value: string): string {
  if (!/^[A-Za-z0-9_/][A-Za-z0-9._/+-]*$/.test(value)) throw new ProgramFileError('a command word has characters a program file cannot carry safely');
  return value;
}

function checkedEnvName(name: string): string {
  if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new ProgramFileError('an environment name has characters a program file cannot carry safely');
  return name;
}

/**
 * The rendered file, read back as supervisord's INI reader would see it: one section, ours, and
 * only the keys we write. A file that fails this is never written.
 */
export function verifyProgramFile(content: string, name: string): void {
  const sections: string[] = [];
  for (const line of content.split('\n')) {
    if (line === '' || line.startsWith(';')) continue;
    if (/[\u0000-\u001f\u007f]/.test(line)) throw new ProgramFileError('program file would hold a control character');
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      sections.push(section[1] as string);
      continue;
    }
    const key = /^([a-z_]+)=/.exec(line)?.[1];
    if (!key || !PROGRAM_KEYS.has(key)) throw new ProgramFileError(`program file would hold an unexpected line`);
  }
  if (sections.length !== 1 || sections[0] !== `program:${name}`) throw new ProgramFileError('program file would hold another section');
}

/** Names of the agents whose program files the charm wrote earlier. */
export function managedProgramNames(paths: HostPaths): string[] {
  if (!fs.existsSync(paths.programDir)) return [];
  return fs
    .readdirSync(paths.programDir)
    .filter((f) => f.endsWith('.conf'))
    .filter((f) => fs.readFileSync(path.join(paths.programDir, f), 'utf8').startsWith(MANAGED_MARKER))
    .map((f) => f.slice(0, -'.conf'.length));
}

/**
 * Writes the given program files and deletes managed files of other agents, except those in
 * `keep` (agents kept on their last good file).
 */
export function writeProgramFiles(paths: HostPaths, files: ReadonlyMap<string, string>, keep: ReadonlySet<string> = new Set()): { written: string[]; removed: string[] } {
  const written = [...files].filter(([name, content]) => writeFileAtomic(paths.programFile(name), content, 0o644)).map(([n]) => n);
  const removed = managedProgramNames(paths).filter((name) => !files.has(name) && !keep.has(name));
  for (const name of removed) fs.rmSync(paths.programFile(name), { force: true });
  return { written, removed };
}
