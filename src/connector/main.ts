/** testflinger-device-connector <device-type> <phase> -c <default.yaml> <testflinger.json> */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadDeviceConfig, loadJobFile } from './config';
import { isPhase, runConnectorPhase } from './connector';
import { DEVICE_TYPES } from './devices';
import { ConnectorError } from './errors';

const EXIT_USAGE = 2;
const USAGE = `usage: testflinger-device-connector <device-type> <phase> -c <default.yaml> <testflinger.json>
device types: ${[...DEVICE_TYPES.keys()].join(', ')}
phases: setup, provision, firmware_update, test, allocate, reserve, cleanup`;

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const [type, phase, jobPath] = parsed.positionals;
  const problem = !type
    ? 'missing device type'
    : !DEVICE_TYPES.has(type)
      ? `unknown device type "${type}"`
      : !phase || !isPhase(phase)
        ? `unknown phase "${phase ?? ''}"`
        : !parsed.values.config
          ? 'missing -c <default.yaml>'
          : !jobPath
            ? 'missing <testflinger.json>'
            : undefined;
  if (problem || !type || !phase || !isPhase(phase) || !parsed.values.config || !jobPath) {
    process.stderr.write(`testflinger-device-connector: ${problem}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  try {
    const device = loadDeviceConfig(parsed.values.config);
    const job = loadJobFile(jobPath);
    return await runConnectorPhase(type, phase, {
      device,
      job,
      runDir: path.dirname(path.resolve(jobPath)),
      print: (line) => process.stdout.write(`${line}\n`),
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    });
  } catch (error) {
    process.stderr.write(`testflinger-device-connector: ${error instanceof ConnectorError ? error.message : String(error)}\n`);
    return error instanceof ConnectorError ? EXIT_USAGE : 1;
  }
}

main().then((code) => {
  process.exitCode = code;
});
