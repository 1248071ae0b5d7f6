/**
 * Runs a device phase as an agent does: the charm's rendered tf-<phase> script, in the job's run
 * directory, with the agent's environment ($provision_type, $agent_id, TESTFLINGER_AGENT_DIR),
 * calling the built connector. Asynchronous, so a test can play the device meanwhile.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TemplateRenderer } from '../../src/charm/templates';
import { PHASE_SCRIPT_TEMPLATE, phaseScriptName } from '../../src/charm/scripts';
import { repoRoot, tempDir } from './tmp';

export const CONNECTOR = path.join(repoRoot, 'dist', 'testflinger-device-connector.js');
/** A test_command that runs the job's test_cmds from testflinger.json, as the connector does. */
export const RUN_TEST_CMDS = `sh -c "$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync("testflinger.json", "utf8")).test_data.test_cmds)')"`;
const scriptsDir = tempDir('tf-scripts');

/** The charm's tf-<phase> script, rendered to call the built connector. */
export function phaseScript(phase: string): string {
  const file = path.join(scriptsDir, phaseScriptName(phase));
  if (!fs.existsSync(file)) {
    const text = new TemplateRenderer(repoRoot).render(PHASE_SCRIPT_TEMPLATE, { phase, agentsRoot: '/nonexistent', connectorProgram: CONNECTOR });
    fs.writeFileSync(file, text, { mode: 0o755 });
  }
  return file;
}

/**
 * testflinger-agent.conf for the real agent program in `agentDir`: one queue, fast polling, its
 * run, log and result dirs in a fresh temp dir, and the rendered tf-* scripts for `phases`.
 */
export function writeAgentConf(agentDir: string, conf: { agentId: string; serverUrl: string; queue: string; provisionType: string; phases: readonly string[] }): string {
  const base = tempDir('agent-run');
  const file = path.join(agentDir, 'testflinger-agent.conf');
  const commands = Object.fromEntries(conf.phases.map((phase) => [`${phase}_command`, phaseScript(phase)]));
  fs.writeFileSync(
    file,
    JSON.stringify({
      agent_id: conf.agentId,
      server_address: conf.serverUrl,
      job_queues: [conf.queue],
      polling_interval: 0.2,
      provision_type: conf.provisionType,
      execution_basedir: path.join(base, 'run'),
      logging_basedir: path.join(base, 'logs'),
      results_basedir: path.join(base, 'results'),
      ...commands,
    }),
  );
  return file;
}

export const AGENT = path.join(repoRoot, 'dist', 'testflinger-agent.js');
/** Agent programs started by `spawnAgent`, ended by `stopAgents` (after each test file). */
const agents: ChildProcess[] = [];

/** Starts the real agent program on `conf` with `env` (HOME, TESTFLINGER_AGENT_DIR, ...) and further `args` (--token-file ...). */
export function spawnAgent(conf: string, env: NodeJS.ProcessEnv, args: readonly string[] = []): ChildProcess {
  const agent = spawn(process.execPath, [AGENT, '-c', conf, ...args], { env, stdio: 'ignore' });
  agents.push(agent);
  return agent;
}

/** Ends every agent `spawnAgent` started that still runs, and waits for each. */
export async function stopAgents(): Promise<void> {
  for (const agent of agents.splice(0)) {
    if (agent.exitCode !== null || agent.signalCode !== null) continue;
    const exited = new Promise((r) => agent.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
  }
}

export interface PhaseRun {
  code: number | null;
  out: string;
}

export interface AgentDir {
  /** Holds default.yaml, as the agent's directory in the config repo. */
  agentDir: string;
  /** The job's run directory, holding testflinger.json. */
  runDir: string;
}

/** An agent directory with `device` as default.yaml and a run directory with `job` as testflinger.json. */
export function agentWithJob(device: Record<string, unknown>, job: Record<string, unknown>, yamlText?: string): AgentDir {
  const agentDir = tempDir('agent');
  const runDir = tempDir('run');
  // JSON is YAML: default.yaml keeps exactly the values given.
  fs.writeFileSync(path.join(agentDir, 'default.yaml'), yamlText ?? JSON.stringify(device, null, 2));
  fs.writeFileSync(path.join(runDir, 'testflinger.json'), JSON.stringify({ job_id: 'job-1', ...job }));
  return { agentDir, runDir };
}

export function runPhase(dirs: AgentDir, deviceType: string, phase: string, env: Record<string, string>, timeoutMs = 90_000): Promise<PhaseRun> {
  return new Promise((resolve) => {
    const child = spawn(phaseScript(phase), [], {
      cwd: dirs.runDir,
      env: { ...env, provision_type: deviceType, agent_id: 'agent-1', TESTFLINGER_AGENT_DIR: dirs.agentDir },
    });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

export function errorFile(dirs: AgentDir): Record<string, { exception_name: string; exception_message: string }> {
  return JSON.parse(fs.readFileSync(path.join(dirs.runDir, 'device-connector-error.json'), 'utf8'));
}
