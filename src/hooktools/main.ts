/** One emulated hook tool per invocation; which one comes from the name it was invoked as. */
import * as path from 'node:path';
import { readState, writeState } from './state';
import { runTool } from './tools';

const statePath = process.env['HOOKTOOL_STATE'];
const tool = path.basename(process.argv[1] ?? '');
if (!statePath) {
  process.stderr.write('ERROR HOOKTOOL_STATE not set\n');
  process.exitCode = 1;
} else {
  const state = readState(statePath);
  const answer = runTool(tool, process.argv.slice(2), state);
  writeState(statePath, state);
  process.stdout.write(answer.stdout);
  process.stderr.write(answer.stderr);
  process.exitCode = answer.exitCode;
}
