/** Real git repositories in temp dirs, as a lab's config repo would be. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { tempDir } from './tmp';

const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 'Lab', GIT_AUTHOR_EMAIL: 'lab@localhost', GIT_COMMITTER_NAME: 'Lab', GIT_COMMITTER_EMAIL: 'lab@localhost' };

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' });
}

export function agentConf(agentId: string, overrides: Record<string, unknown> = {}): string {
  return stringify({
    agent_id: agentId,
    server_address: '127.0.0.1:1',
    job_queues: [`${agentId}-queue`],
    polling_interval: 10,
    provision_type: 'fake',
    test_command: 'tf-test',
    ...overrides,
  });
}

export class ConfigRepo {
  readonly dir: string;
  constructor(readonly configDir = 'lab1', branch = 'main') {
    this.dir = tempDir('cfgrepo');
    git(this.dir, 'init', '-q', '-b', branch);
  }
  get url(): string {
    return this.dir;
  }
  addAgent(name: string, conf = agentConf(name), deviceYaml = 'device_ip: 127.0.0.1\n'): this {
    const dir = path.join(this.dir, this.configDir, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'testflinger-agent.conf'), conf);
    fs.writeFileSync(path.join(dir, 'default.yaml'), deviceYaml);
    return this;
  }
  writeFile(relative: string, content: string): this {
    fs.mkdirSync(path.dirname(path.join(this.dir, relative)), { recursive: true });
    fs.writeFileSync(path.join(this.dir, relative), content);
    return this;
  }
  removeAgent(name: string): this {
    fs.rmSync(path.join(this.dir, this.configDir, name), { recursive: true, force: true });
    return this;
  }
  commit(message = 'update'): string {
    git(this.dir, 'add', '-A');
    git(this.dir, 'commit', '-q', '--allow-empty', '-m', message);
    return git(this.dir, 'rev-parse', 'HEAD').trim();
  }
}
