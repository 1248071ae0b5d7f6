/**
 * npm run pack [-- --arch amd64|arm64] [--into DIR]: build (done by the npm script), then write
 * testflinger-agent-host_<arch>.charm, or with --into lay its files out in DIR (charmcraft's part).
 * The architecture defaults to this machine's.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { hostArch, parseArch } from './noderuntime';
import { packCharm, stageCharm } from './pack';

function main(): void {
  const { values } = parseArgs({ options: { arch: { type: 'string' }, into: { type: 'string' } } });
  const projectDir = path.resolve(__dirname, '..');
  const arch = values.arch ? parseArch(values.arch) : hostArch();
  if (values.into) {
    const { members } = stageCharm(projectDir, path.resolve(values.into), { arch });
    process.stdout.write(`staged ${members} files for ${arch} in ${values.into}\n`);
    return;
  }
  const { file, bytes, members } = packCharm(projectDir, undefined, { arch });
  process.stdout.write(`wrote ${path.relative(process.cwd(), file) || file} (${arch}): ${members} files, ${(bytes / 1024 / 1024).toFixed(1)} MiB\n`);
}

try {
  main();
} catch (error) {
  process.stderr.write(`pack: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
