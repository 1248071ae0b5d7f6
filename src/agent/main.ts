/**
 * testflinger-agent -c <conf> [-p <metrics port>] [--token-file <path>] [--mqtt-credentials-file <path>]
 * Signals are translated here only: SIGUSR1 → safe restart, SIGTERM/SIGINT → stop (the running
 * phase is ended and the job still reported).
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from './agent';
import { ServerApi } from './api';
import { TestflingerClient } from './client';
import { systemClock } from './clock';
import { AGENT_DIR_ENV, LOCK_SCOPE_ENV, METRICS_HOST_ENV, MQTT_BROKER_ENV, OFFLINE_MARKER_DIR_ENV, SERVER_ENV, STATE_DIR_ENV } from '../common/contract';
import { ConfigError, loadAgentConfig, serverUrl, stateDirNote } from './config';
import { acquireAgentLock, AgentLockError, lockDirectory } from './lock';
import { AgentLogger, oneLine } from './logger';
import { AgentMetrics } from './metrics';
import { defaultContainment } from './containment';
import { sandboxFromEnv } from './containment-sandbox';
import { jobEnv, scheduleMemoryReduction } from './memory';
import { loadMqttBundle } from './mqtt/loader';

/** Exit codes: a bad conf or a second instance should not be restarted in a tight loop by hand. */
const EXIT_BAD_CONFIG = 2;
const EXIT_LOCKED = 3;
const DEFAULT_TOKEN_FILE = '/var/lib/testflinger-agent/refresh_token';

/** Why the agent cannot go on, as its last line on stderr: one line, which `juju status` quotes. */
function fatal(message: string): void {
  process.stderr.write(`testflinger-agent: ${oneLine(message)}\n`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      metrics_port: { type: 'string', short: 'p' },
      'token-file': { type: 'string' },
      'mqtt-credentials-file': { type: 'string' },
    },
  });
  if (!values.config) {
    process.stderr.write('usage: testflinger-agent -c <testflinger-agent.conf> [-p <metrics port>] [--token-file <path>]\n');
    return EXIT_BAD_CONFIG;
  }
  const confPath = path.resolve(values.config);
  let config;
  try {
    config = loadAgentConfig(confPath);
  } catch (error) {
    fatal(error instanceof ConfigError ? error.message : String(error));
    return EXIT_BAD_CONFIG;
  }
  const address = config.server_address ?? process.env[SERVER_ENV];
  if (!address) {
    fatal(`${confPath}: server_address: required (or ${SERVER_ENV} in the environment)`);
    return EXIT_BAD_CONFIG;
  }
  const log = new AgentLogger(config.agent_id, config.logging_level, path.join(config.logging_basedir, `testflinger-agent-${config.agent_id}.log`), config.logging_quiet);
  let releaseLock: () => void;
  try {
    // Taken before anything reads the agent's folders: a job left there is only treated as
    // interrupted by the process that holds this lock.
    releaseLock = await acquireAgentLock({
      agentId: config.agent_id,
      directory: lockDirectory(process.env[STATE_DIR_ENV], process.env[LOCK_SCOPE_ENV], config.logging_basedir),
      confPath,
      pidFile: path.join(config.logging_basedir, `${config.agent_id}.pid`),
      log: (m) => log.warning(m),
    });
  } catch (error) {
    log.error(error instanceof AgentLockError ? error.message : String(error));
    return EXIT_LOCKED;
  }

  const metrics = new AgentMetrics();
  const metricsPort = values.metrics_port ? Number(values.metrics_port) : undefined;
  const metricsServer = metricsPort
    ? await metrics.serve(metricsPort, process.env[METRICS_HOST_ENV] ?? '0.0.0.0').catch((error: Error) => {
        log.warning(`metrics not served on port ${metricsPort}: ${error.message}`);
        return undefined;
      })
    : undefined;
  const tokenFile = values['token-file'] ?? DEFAULT_TOKEN_FILE;
  const client = new TestflingerClient(serverUrl(address), systemClock, { tokenFile });
  const containment = defaultContainment();
  log.info(`containment: ${containment.description}`);
  const basedirsNote = stateDirNote(config, process.env[STATE_DIR_ENV]);
  if (basedirsNote) log.info(basedirsNote);
  // The test phase must not see other jobs, other agents' results and logs, or the agent's token.
  const testSandbox = sandboxFromEnv(process.env, [config.execution_basedir, config.results_basedir, config.logging_basedir, path.dirname(tokenFile)]);
  if (testSandbox?.unusable) log.error(`test phases will fail: the sandbox is on but unusable: ${testSandbox.unusable}`);
  else if (testSandbox) log.info(`test phases run in a sandbox (${testSandbox.program})`);
  const agentDir = process.env[AGENT_DIR_ENV];
  const api = new ServerApi(client);
  // Loaded only when the charm set mqtt-broker: without it, no MQTT code is read at all.
  const mqttFile = values['mqtt-credentials-file'];
  const mqtt = process.env[MQTT_BROKER_ENV]
    ? loadMqttBundle().startAgentMqtt({ env: process.env, config, log, metrics, api, ...(mqttFile ? { credentialsFile: mqttFile } : {}) })
    : undefined;
  const agent = new Agent({
    api,
    config,
    clock: systemClock,
    log,
    metrics,
    baseEnv: jobEnv(process.env),
    markerDir: process.env[OFFLINE_MARKER_DIR_ENV] ?? '/tmp',
    containment,
    ...(testSandbox ? { testSandbox } : {}),
    ...(agentDir ? { programName: path.basename(agentDir) } : {}),
    ...(mqtt ? { statusWatcher: mqtt.watcher } : {}),
  });

  const shutdown = new AbortController();
  process.on('SIGUSR1', () => agent.requestRestart());
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      log.info(`${signal} received; stopping`);
      shutdown.abort();
    });
  }
  log.info(`agent ${JSON.stringify(config.agent_id)} serving queues ${config.job_queues.map((q) => JSON.stringify(q)).join(', ')} from ${JSON.stringify(client.baseUrl)}`);
  const memoryReduction = scheduleMemoryReduction();
  try {
    const exit = await agent.run(shutdown.signal);
    log.info(exit === 'restart' ? 'exiting for a safe restart' : 'stopped');
    return 0;
  } finally {
    memoryReduction.stop();
    await mqtt?.stop();
    metricsServer?.close();
    releaseLock();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
    // Nothing left to wait for: open sockets (keep-alive) must not hold the process.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (error: unknown) => {
    // The stack for whoever debugs it, then the one line that says why (the unit's status quotes it).
    if (error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    fatal(`fatal: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
