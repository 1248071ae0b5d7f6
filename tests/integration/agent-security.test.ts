/**
 * The agent against hostile input: jobs and a server that try to read its secrets, break out of
 * its folders, exhaust its memory or take over its environment. Real HTTP on 127.0.0.1, real
 * files and processes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DevServer } from '../../src/devserver';
import { jobState, startAgent, type RunningAgent } from '../helpers/agent';
import { eventually, tempDir } from '../helpers/tmp';

let server: DevServer;
let running: RunningAgent[] = [];
beforeEach(async () => {
  server = new DevServer();
  await server.start();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
  await server.stop();
});
function agent(...args: Parameters<typeof startAgent> extends [unknown, ...infer Rest] ? Rest : never): RunningAgent {
  const r = startAgent(server, ...args);
  running.push(r);
  return r;
}
const done = (id: string) => eventually(() => ['complete', 'cancelled'].includes(String(jobState(server, id))), `job ${id} to end`);
const modeOf = (file: string) => (fs.statSync(file).mode & 0o777).toString(8);

describe('job files are private to the agent user', () => {
  let umask: number;
  beforeEach(() => {
    // The loosest umask: modes must come from the agent, not from the environment.
    umask = process.umask(0);
  });
  afterEach(() => {
    process.umask(umask);
  });

  it('run and bookkeeping folders are 0700 and job files 0600, even when the folders existed', async () => {
    const base = tempDir('perm');
    const runBase = path.join(base, 'run');
    fs.mkdirSync(runBase, { mode: 0o755 });
    fs.chmodSync(runBase, 0o755);
    const a = agent({
      execution_basedir: runBase,
      test_command: 'stat -c "%a %n" "$PWD" testflinger.json testflinger-outcome.json test.log ../.*.agent ../.*.agent/job.json ../.*.agent/progress.json',
    });
    const id = server.submitJob({ job_queue: 'q1', test_data: { secrets: { API_TOKEN: 'hunter2' } } });
    await done(id);
    const lines = String(server.resultView(id)?.['test_output']).split('\n').filter((l) => /^\d{3} /.test(l));
    const modes = Object.fromEntries(lines.map((l) => [path.basename(l.slice(4)), l.slice(0, 3)]));
    expect(modes).toEqual({
      [id]: '700',
      'testflinger.json': '600',
      'testflinger-outcome.json': '600',
      'test.log': '600',
      [`.${id}.agent`]: '700',
      'job.json': '600',
      'progress.json': '600',
    });
    expect(modeOf(a.config.execution_basedir)).toBe('700');
  });

  it('results kept for a server that is away are 0700 folders of 0600 files', async () => {
    const a = agent({ test_command: 'mkdir -p artifacts && echo report > artifacts/r.txt' });
    server.failNext('POST', /^\/v1\/result\/[^/]+$/, 503, 1000, (b) => b['job_state'] === 'complete');
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    const kept = path.join(a.config.results_basedir, id);
    await eventually(() => fs.existsSync(path.join(kept, 'result.json')), 'results kept on disk');
    expect(modeOf(a.config.results_basedir)).toBe('700');
    expect(modeOf(kept)).toBe('700');
    for (const file of fs.readdirSync(kept)) expect([file, modeOf(path.join(kept, file))]).toEqual([file, '600']);
  });
});
