/** One emulated hook tool per invocation; which one comes from the name it was invoked as. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readState, writeState } from './state';
import { runTool } from './tools';
import type { ToolIO } from './toolkit';

/** `--file -` reads stdin, any other path is read relative to the hook's working directory. */
const io: ToolIO = {
  readInput: (pathOrDash) => fs.readFileSync(pathOrDash === '-' ? 0 : pathOrDash, 'utf8'),
};

const statePath = process.env['HOOKTOOL_STATE'];
const tool = path.basename(process.argv[1] ?? '');
if (!statePath) {
  process.stderr.write('ERROR HOOKTOOL_STATE not set\n');
  process.exitCode = 1;
} else {
  const state = readState(statePath);
  const answer = runTool(tool, process.argv.slice(2), state, io);
  writeState(statePath, state);
  process.stdout.write(answer.stdout);
  process.stderr.write(answer.stderr);
  process.exitCode = answer.exitCode;
}
