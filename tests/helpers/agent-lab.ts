/**
 * Jobs through the real agent program (dist/testflinger-agent.js): the dev server on 127.0.0.1
 * takes the jobs, each agent runs the charm's rendered tf-* scripts, which run the built
 * connector. Agents and the server are stopped after the test file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import type { DevServerOptions } from '../../src/devserver/server';
import { spawnAgent, stopAgents, writeAgentConf } from './phase-script';
import { eventually, onCleanup, tempDir } from './tmp';

export interface LabAgent {
  /** The agent conf's provision_type: the device type. */
  provisionType: string;
  /** agent_id; `<provisionType>-agent` by default. */
  agentId?: string;
  /** The agent's one queue; `<provisionType>-q` by default. */
  queue?: string;
  /** default.yaml in the agent's directory: an object (written as JSON, which is YAML) or YAML text. */
  device: Record<string, unknown> | string;
  /** The agent's environment (HOME with the agents' key, PATH, ...); TESTFLINGER_AGENT_DIR is added. */
  env: NodeJS.ProcessEnv;
  /** The phases with a tf-* script; setup, provision, test and cleanup by default. */
  phases?: readonly string[];
  /** Further arguments of the agent program (--token-file ...). */
  args?: readonly string[];
}

export interface LabJob {
  /** The job as a user submits it, without job_queue (the agent's queue is set). */
  job: Record<string, unknown>;
  /** The attachments archive the CLI would upload with it. */
  attachments?: Buffer;
}

export class AgentLab {
  readonly server: DevServer;

  /** `options`: the dev server's (auth, ...). */
  constructor(options: DevServerOptions = {}) {
    this.server = new DevServer(options);
  }

  async start(): Promise<this> {
    await this.server.start();
    onCleanup(async () => {
      await stopAgents();
      await this.server.stop();
    });
    return this;
  }

  /** Starts the real agent program for one device, on a queue of its own; returns the queue. */
  startAgent(agent: LabAgent): string {
    const agentDir = tempDir('agent-conf');
    const queue = agent.queue ?? `${agent.provisionType}-q`;
    const phases = agent.phases ?? ['setup', 'provision', 'test', 'cleanup'];
    const conf = writeAgentConf(agentDir, { agentId: agent.agentId ?? `${agent.provisionType}-agent`, serverUrl: this.server.url, queue, provisionType: agent.provisionType, phases });
    fs.writeFileSync(path.join(agentDir, 'default.yaml'), typeof agent.device === 'string' ? agent.device : JSON.stringify(agent.device, null, 2));
    spawnAgent(conf, { ...agent.env, TESTFLINGER_AGENT_DIR: agentDir }, agent.args);
    return queue;
  }

  /** Submits a job to `queue` (with its attachments, as uploaded); returns its id. */
  submit(queue: string, { job, attachments }: LabJob): string {
    const id = this.server.submitJob({ ...job, job_queue: queue });
    if (attachments) {
      this.server.attachments.set(id, attachments);
      this.server.jobs.get(id)!.data['attachments_status'] = 'complete';
    }
    return id;
  }

  /** The server's result view once the job is complete, or what it is when time runs out. */
  async result(id: string, timeoutMs = 90_000): Promise<Record<string, unknown>> {
    await eventually(() => this.server.resultView(id)?.['job_state'] === 'complete', 'the job to complete', timeoutMs, 200).catch(() => undefined);
    return this.server.resultView(id) ?? {};
  }
}

/** One job on one agent of a lab of its own: the server's result view once the job is complete. */
export async function runJobThroughAgent(run: LabAgent & LabJob & { timeoutMs?: number }): Promise<Record<string, unknown>> {
  const lab = await new AgentLab().start();
  const queue = lab.startAgent(run);
  return lab.result(lab.submit(queue, run), run.timeoutMs);
}
