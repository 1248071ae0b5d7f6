/** A real Prometheus on 127.0.0.1 (Debian's package), fed scrape jobs, queried over its HTTP API. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort } from './sshd';
import { onCleanup, tempDir } from './tmp';

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** Stops a child with SIGTERM, then SIGKILL if it lingers; bounded either way. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export class TestPrometheus {
  private child: ChildProcess | undefined;
  url = '';

  async start(scrapeJobs: unknown[]): Promise<this> {
    const dir = tempDir('prom');
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    const config = { global: { scrape_interval: '1s', scrape_timeout: '1s' }, scrape_configs: scrapeJobs };
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify(config));
    this.child = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
    onCleanup(() => this.stop());
    return this;
  }

  async query(promql: string): Promise<PromSample[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; data: { result: PromSample[] } };
    if (body.status !== 'success') throw new Error(`query ${promql}: ${JSON.stringify(body)}`);
    return body.data.result;
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
  }
}
