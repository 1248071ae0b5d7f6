/** A real agent program (dist/testflinger-agent.js) in a process of its own, for tests of what its process does. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, tempDir } from './tmp';

/**
 * The real agent program, run as `nobody` the way a sandbox (AGENT_HOST_ROOT) runs it: no root,
 * no cgroup of its own; or as root (`asRoot`), which has one here.
 */
export class AgentProcess {
  private child: ChildProcess | undefined;
  /** `dir`: an earlier agent's, to start where it was killed. */
  /** `uid`: the user it runs as when not root (nobody unless told). */
  constructor(private readonly env: Record<string, string> = {}, readonly dir = tempDir('unpriv-agent'), private readonly asRoot = false, private readonly uid = 65534) {}

  start(serverUrl: string, conf: Record<string, unknown>): this {
    const run = (p: string) => path.join(this.dir, p);
    const text = JSON.stringify({
      agent_id: 'agent-u', server_address: serverUrl, job_queues: ['q1'], polling_interval: 0.1,
      execution_basedir: run('run'), logging_basedir: run('logs'), results_basedir: run('results'),
      setup_command: 'true', cleanup_command: 'echo cleanup phase', ...conf,
    });
    fs.writeFileSync(run('agent.conf'), text);
    // Its directory is its user's: the agent refuses a lock directory another user owns.
    if (!this.asRoot) fs.chownSync(this.dir, this.uid, this.uid);
    const asNobody = this.asRoot ? [] : ['setpriv', `--reuid=${this.uid}`, `--regid=${this.uid}`, '--clear-groups', '--'];
    const [file, ...args] = [
      ...asNobody,
      process.execPath, path.join(repoRoot, 'dist', 'testflinger-agent.js'), '-c', run('agent.conf'), '--token-file', run('no-token'),
    ];
    this.child = spawn(file as string, args, { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: this.dir, TESTFLINGER_AGENT_LOCK_SCOPE: this.dir, ...this.env }, stdio: 'ignore' });
    return this;
  }

  log(): string {
    const file = path.join(this.dir, 'logs', 'testflinger-agent-agent-u.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}
