/** node dist/devserver.js [--port N]: a local Testflinger API on 127.0.0.1 until Ctrl-C. */
import { parseArgs } from 'node:util';
import { DevServer } from './server';

const { values } = parseArgs({ options: { port: { type: 'string', default: '8000' } } });
const server = new DevServer({ port: Number(values.port) });
server.start().then(
  (url) => process.stdout.write(`Testflinger dev server on ${url} (Ctrl-C to stop)\n`),
  (error: Error) => {
    process.stderr.write(`devserver: ${error.message}\n`);
    process.exitCode = 1;
  },
);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void server.stop());
