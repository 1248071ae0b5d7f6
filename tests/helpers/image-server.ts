/**
 * Files over HTTP on 127.0.0.1, as a lab's image or firmware server: GET /<name> answers the
 * bytes added under that name, anything else 404, and every request's path is recorded. A file
 * added as `cut` sends half its bytes and then drops the connection (a download broken half-way).
 * Stopped after the test file.
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import { onCleanup } from './tmp';

export class ImageServer {
  /** The path of every request, in order ("/<name>"). */
  readonly requests: string[] = [];
  private readonly files = new Map<string, { data: Buffer; cut: boolean }>();
  private readonly server = http.createServer((req, res) => this.answer(req, res));
  private base = '';

  /** A started server with `files` (name -> content) on it. */
  static async serving(files: Record<string, Buffer | string>): Promise<ImageServer> {
    const server = await new ImageServer().start();
    for (const [name, data] of Object.entries(files)) server.add(name, data);
    return server;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    onCleanup(() => this.stop());
    return this;
  }

  /** Serves `data` as /<name> from now on; returns its URL. */
  add(name: string, data: Buffer | string, options: { cut?: boolean } = {}): string {
    this.files.set(`/${name}`, { data: Buffer.from(data), cut: options.cut ?? false });
    return this.url(name);
  }

  url(name: string): string {
    return `${this.base}/${name}`;
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push(req.url ?? '');
    const file = this.files.get(req.url ?? '');
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': file.data.length, 'content-type': 'application/octet-stream' });
    if (file.cut) res.write(file.data.subarray(0, Math.floor(file.data.length / 2)), () => res.destroy());
    else res.end(file.data);
  }
}
