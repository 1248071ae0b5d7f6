/** npm run pack: build (done by the npm script) and write testflinger-agent-host.charm. */
import * as path from 'node:path';
import { packCharm } from './pack';

try {
  const { file, bytes, members } = packCharm(path.resolve(__dirname, '..'));
  process.stdout.write(`wrote ${path.relative(process.cwd(), file) || file}: ${members} files, ${(bytes / 1024).toFixed(0)} KiB\n`);
} catch (error) {
  process.stderr.write(`pack: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
