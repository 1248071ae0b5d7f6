/** Real agent processes for the benchmark: on a pinned Node.js line, with given flags and environment. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { NODE_ENV, NODE_FLAGS } from '../src/charm/runtime';
import { NODE_RELEASES, SHIPPED_NODE_LINE, defaultCacheDir, hostArch, nodeBinary, type NodeLine } from '../src/pack/noderuntime';

export const CHARM_DIR = path.resolve(__dirname, '..');
export const AGENT = path.join(CHARM_DIR, 'dist', 'testflinger-agent.js');
export const QUICK = process.argv.includes('--quick');
const NODE_CACHE = defaultCacheDir(CHARM_DIR);

/** A Node.js to run an agent on: a pinned line's binary, the flags given it, its environment. */
export interface AgentRuntime {
  label: string;
  node: string;
  flags: readonly string[];
  env?: Readonly<Record<string, string>>;
}

export const pinnedNode = (line: NodeLine) => nodeBinary(hostArch(), NODE_CACHE, line);
const CHARM_SETTINGS = [...Object.entries(NODE_ENV['testflinger-agent']).map(([k, v]) => `${k}=${v}`), ...NODE_FLAGS['testflinger-agent']];
/** The agent's flags and environment as the charm's wrapper gives them. */
export const charmSettings = () => CHARM_SETTINGS.join(' ') || 'none';
/** What the charm installs: the shipped line with the wrapper's flags and environment. */
export const shipped = (): AgentRuntime => ({ label: `Node ${SHIPPED_NODE_LINE}, charm's settings`, node: pinnedNode(SHIPPED_NODE_LINE), flags: NODE_FLAGS['testflinger-agent'], env: NODE_ENV['testflinger-agent'] });
/** The baseline: what the charm ran before, Node 20 with V8's defaults. */
export const node20 = (): AgentRuntime => ({ label: 'Node 20, defaults', node: pinnedNode('20'), flags: [] });

/** A line with a set of settings: VAR=value items go to the environment (glibc reads MALLOC_*), the rest are node's flags. */
export const asRuntime = (line: NodeLine, set: readonly string[], name?: string): AgentRuntime => ({
  label: `Node ${line} (${NODE_RELEASES[line].version}) ${name ?? (set.length ? set.join(' ') : 'defaults')}`,
  node: pinnedNode(line),
  flags: set.filter((f) => f.startsWith('--')),
  env: Object.fromEntries(set.filter((f) => !f.startsWith('--')).map((f) => f.split('=') as [string, string])),
});
/** The charm's settings on another line. */
export const withCharmSettings = (line: NodeLine) => asRuntime(line, CHARM_SETTINGS, "charm's settings");

export function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `bench-${prefix}-`));
}

export function agentConf(dir: string, server: string, name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, `${name}.conf`);
  fs.writeFileSync(
    file,
    stringify({
      agent_id: name,
      server_address: server,
      job_queues: [`${name}-q`],
      polling_interval: 10,
      execution_basedir: path.join(dir, name, 'run'),
      logging_basedir: path.join(dir, name, 'logs'),
      results_basedir: path.join(dir, name, 'results'),
      ...extra,
    }),
  );
  return file;
}

export function startAgent(conf: string, runtime: AgentRuntime = shipped(), env: Record<string, string | undefined> = {}): ChildProcess {
  return spawn(runtime.node, [...runtime.flags, AGENT, '-c', conf], { stdio: 'ignore', env: { ...process.env, ...runtime.env, ...env } });
}
