/** testflinger-device-connector <device-type> <phase> -c <default.yaml> <testflinger.json> */
import { USAGE, parseCommandLine, type Command } from './cli';
import { loadDeviceConfig } from './config';
import { runConnectorPhase } from './connector';
import { ConnectorError } from './errors';

const EXIT_USAGE = 2;

function refuse(error: unknown, withUsage: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`testflinger-device-connector: ${message}\n${withUsage ? `${USAGE}\n` : ''}`);
  return error instanceof ConnectorError ? EXIT_USAGE : 1;
}

async function main(argv: readonly string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    return refuse(error, true);
  }
  if (command.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  try {
    const device = loadDeviceConfig(command.configFile, command.type.configSchema);
    return await runConnectorPhase(command.type, command.phase, {
      device,
      jobFile: command.jobFile,
      print: (line) => process.stdout.write(`${line}\n`),
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    });
  } catch (error) {
    return refuse(error, false);
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
