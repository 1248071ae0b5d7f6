/** npm run demo [-- --keep]: the whole agent host, locally, in one command. */
import * as path from 'node:path';
import { runDemo } from './demo';

runDemo({ charmDir: path.resolve(__dirname, '..'), print: (line) => process.stdout.write(`${line}\n`), keep: process.argv.includes('--keep') }).then(
  (summary) => process.stdout.write(`\nDemo complete: job ${summary.jobId} ${String(summary.jobResult['job_state'])}; unit ${summary.finalStatus}\n`),
  (error: Error) => {
    process.stderr.write(`\nDemo failed: ${error.message}\n`);
    process.exitCode = 1;
  },
);
