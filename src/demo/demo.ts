/**
 * The whole system on one machine: a sandboxed agent host (AGENT_HOST_ROOT), a git config repo
 * with two agents, the dev server, the real charm hooks through dispatch with emulated hook
 * tools, the real supervisord, a job run to completion, then a third agent added by
 * update-configs; with mosquitto installed, the agents' live status over MQTT too. Everything it
 * starts, it stops.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { DevServer } from '../devserver';
import { SandboxHost } from '../sandbox/host';
import { showMessages, startDemoBroker, type DemoBroker } from './mqttwatch';

export interface DemoOptions {
  /** The charm to run (a checkout with dist/ built, or an unpacked .charm). */
  charmDir: string;
  print: (line: string) => void;
  keep?: boolean;
  /** Upper bound for each wait. */
  stepTimeoutMs?: number;
}

export interface DemoSummary {
  root: string;
  jobId: string;
  jobResult: Record<string, unknown>;
  /** Pids of the first two agents before and after update-configs added the third. */
  pidsBefore: Record<string, number | undefined>;
  pidsAfter: Record<string, number | undefined>;
  updateConfigsResults: Record<string, unknown>;
  finalStatus: string;
  /** Messages seen on the demo's broker; none without mosquitto. */
  mqttMessages: number;
}

const GIT_ENV = { GIT_AUTHOR_NAME: 'demo', GIT_AUTHOR_EMAIL: 'demo@localhost', GIT_COMMITTER_NAME: 'demo', GIT_COMMITTER_EMAIL: 'demo@localhost' };

class DemoStepError extends Error {
  override readonly name = 'DemoStepError';
}

async function waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new DemoStepError(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
}

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', args, { cwd, env: { ...process.env, ...GIT_ENV }, stdio: 'ignore' });
}

function agentConf(root: string, name: string, server: string): string {
  const base = path.join(root, 'tmp', 'testflinger');
  return stringify({
    agent_id: name,
    server_address: server,
    job_queues: ['demo-queue'],
    location: 'demo lab',
    provision_type: 'fake',
    polling_interval: 1,
    execution_basedir: `${base}/run`,
    logging_basedir: `${base}/logs`,
    results_basedir: `${base}/results`,
    setup_command: 'tf-setup',
    provision_command: 'tf-provision',
    test_command: 'tf-test',
    cleanup_command: 'tf-cleanup',
  });
}

function addAgent(repo: string, root: string, name: string, server: string): void {
  const dir = path.join(repo, 'lab1', name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'testflinger-agent.conf'), agentConf(root, name, server));
  fs.writeFileSync(path.join(dir, 'default.yaml'), stringify({ device_ip: '127.0.0.1', env: { DEMO: 'yes' } }));
}

/** Supervisord, git and sshd's client must be there; as root, install what is missing. */
export function ensurePrerequisites(print: (line: string) => void): void {
  const has = (cmd: string) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const missing = [['supervisord', 'supervisor'], ['git', 'git']].filter(([cmd]) => !has(cmd as string)).map(([, pkg]) => pkg as string);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new DemoStepError(`missing programs: install the Debian packages ${missing.join(' ')} (sudo apt-get install -y ${missing.join(' ')})`);
  print(`installing ${missing.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: 'inherit', env });
}

export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const { print, charmDir } = options;
  const timeout = options.stepTimeoutMs ?? 60_000;
  ensurePrerequisites(print);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-demo-'));
  const server = new DevServer();
  const host = new SandboxHost({ root, charmDir, hooktool: path.join(charmDir, 'dist', 'hooktool.js') });
  const { unit } = host;
  const supervisorctl = (...args: string[]) => host.supervisorctl(...args);
  const programs = () => host.programs();
  const step = async <T>(title: string, run: () => Promise<T>): Promise<T> => {
    print(`\n== ${title}`);
    try {
      return await run();
    } catch (error) {
      throw new DemoStepError(`step "${title}" failed: ${(error as Error).message}`);
    }
  };
  const hook = async (dispatchPath: string, params?: Record<string, unknown>) => {
    const logsBefore = unit.state().logs.length;
    const result = await host.dispatch(dispatchPath, params ? { actionParams: params } : {});
    const state = unit.state();
    for (const log of state.logs.slice(logsBefore)) print(`   juju-log ${log.level}: ${log.message}`);
    print(`   ${dispatchPath} exit ${result.exitCode} in ${result.durationMs.toFixed(0)} ms; unit status: ${state.unitStatus?.status ?? 'unknown'}: ${state.unitStatus?.message ?? ''}`);
    if (result.exitCode !== 0) throw new DemoStepError(`${dispatchPath} failed: ${result.stderr.trim()}`);
    return state;
  };

  let broker: DemoBroker | undefined;
  try {
    const url = await step('Start a Testflinger dev server on 127.0.0.1', async () => {
      const u = await server.start();
      print(`   ${u}`);
      return u;
    });
    const repo = path.join(root, 'lab-config-repo');
    await step('Create a config repo with two agents (fake device type)', async () => {
      fs.mkdirSync(repo, { recursive: true });
      git(repo, 'init', '-q', '-b', 'main');
      addAgent(repo, root, 'demo-agent-1', url);
      addAgent(repo, root, 'demo-agent-2', url);
      git(repo, 'add', '-A');
      git(repo, 'commit', '-q', '-m', 'two demo agents');
      print(`   ${repo}: lab1/demo-agent-1, lab1/demo-agent-2`);
    });
    broker = await step('Start an MQTT broker (mosquitto) on 127.0.0.1, if installed', () => startDemoBroker(print));
    host.setConfig({ 'config-repo': repo, 'config-dir': 'lab1', 'testflinger-server': url, ...(broker ? { 'mqtt-broker': broker.url } : {}) });
    await step(`Deploy: install, config-changed, start (AGENT_HOST_ROOT=${root})`, async () => {
      await hook('hooks/install');
      await hook('hooks/config-changed');
      await hook('hooks/start');
    });
    await step('Both agents RUNNING under supervisord and reporting to the server', async () => {
      await waitFor('both agents RUNNING and waiting', timeout, () => ['demo-agent-1', 'demo-agent-2'].every((n) => programs().get(n)?.state === 'RUNNING' && server.agents.get(n)?.['state'] === 'waiting'));
      print(supervisorctl('status').trimEnd().replace(/^/gm, '   '));
    });
    const jobId = await step('Submit a job to demo-queue and follow it', async () => {
      const id = server.submitJob({ job_queue: 'demo-queue', provision_data: { distro: 'noble' }, test_data: { test_cmds: ['echo "testing $DEVICE_IP"', 'uname -s'] } });
      print(`   job ${id}`);
      let last = '';
      await waitFor('the job to complete', timeout, () => {
        const state = String(server.resultView(id)?.['job_state'] ?? '');
        if (state !== last) print(`   job_state: ${(last = state)}`);
        return state === 'complete';
      });
      return id;
    });
    const jobResult = server.resultView(jobId) as Record<string, unknown>;
    const seen = broker?.messages;
    if (seen) {
      await step('The same job, live over MQTT (retained status, last job, the unit\'s summary)', async () => {
        await waitFor('the job as an agent\'s last_job', timeout, () => seen.some((m) => m.topic.endsWith('/last_job') && m.text.includes(jobId)));
        showMessages(seen, jobId, print);
      });
    }
    await step('The result, as `testflinger-cli results` shows it', async () => {
      for (const [key, value] of Object.entries(jobResult).filter(([k]) => k.endsWith('_status'))) print(`   ${key}: ${String(value)}`);
      print(String(jobResult['test_output'] ?? '').trimEnd().replace(/^/gm, '   | '));
    });
    const pidsOf = () => Object.fromEntries(['demo-agent-1', 'demo-agent-2'].map((n) => [n, programs().get(n)?.pid]));
    const pidsBefore = pidsOf();
    const updateConfigsResults = await step('Add a third agent to the repo; run the update-configs action', async () => {
      addAgent(repo, root, 'demo-agent-3', url);
      git(repo, 'add', '-A');
      git(repo, 'commit', '-q', '-m', 'a third agent');
      const state = await hook('actions/update-configs');
      if (state.actionFailed) throw new DemoStepError(`update-configs failed: ${state.actionMessage}`);
      print(`   results: ${JSON.stringify(state.actionResults)}`);
      await waitFor('demo-agent-3 RUNNING', timeout, () => programs().get('demo-agent-3')?.state === 'RUNNING');
      return state.actionResults;
    });
    const pidsAfter = pidsOf();
    const finalStatus = await step('supervisorctl status: only the new agent started', async () => {
      print(supervisorctl('status').trimEnd().replace(/^/gm, '   '));
      const untouched = Object.keys(pidsBefore).every((n) => pidsBefore[n] === pidsAfter[n]);
      print(`   first two agents kept their pids: ${untouched ? 'yes' : 'NO'}`);
      const state = await hook('hooks/update-status');
      return `${state.unitStatus?.status}: ${state.unitStatus?.message}`;
    });
    return { root, jobId, jobResult, pidsBefore, pidsAfter, updateConfigsResults, finalStatus, mqttMessages: broker?.messages.length ?? 0 };
  } finally {
    print('\n== Stop everything the demo started');
    await broker?.stop();
    await host.shutdown();
    await server.stop();
    if (!options.keep) fs.rmSync(root, { recursive: true, force: true });
    print(options.keep ? `   kept ${root}` : '   supervisord and the dev server stopped; sandbox removed');
  }
}
