/**
 * The charm–agent–connector contract: names and codes that agents already deployed, upstream's
 * tools and dashboards rely on. A change here must be deliberate, so every value is spelled out.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as contract from '../../src/common/contract';
import { AGENT_STATES, AgentMetrics } from '../../src/agent/metrics';
import { parseAgentView } from '../../src/charm/operations/metrics';
import { CONNECTOR_PHASES } from '../../src/connector';

const ROOT = path.join(__dirname, '..', '..');

describe('the contract', () => {
  it('names the environment the charm, the root wrapper and tests set', () => {
    expect({
      server: contract.SERVER_ENV,
      stateDir: contract.STATE_DIR_ENV,
      agentDir: contract.AGENT_DIR_ENV,
      offlineMarkerDir: contract.OFFLINE_MARKER_DIR_ENV,
      lockScope: contract.LOCK_SCOPE_ENV,
      testSandbox: contract.TEST_SANDBOX_ENV,
      sandboxProgram: contract.SANDBOX_PROGRAM_ENV,
      containment: contract.CONTAINMENT_ENV,
      maxProcesses: contract.MAX_PROCESSES_ENV,
      maxMemory: contract.MAX_MEMORY_ENV,
      metricsHost: contract.METRICS_HOST_ENV,
      tokenFd: contract.TOKEN_FD_ENV,
      mqttBroker: contract.MQTT_BROKER_ENV,
      mqttTopicPrefix: contract.MQTT_TOPIC_PREFIX_ENV,
      mqttSubmit: contract.MQTT_SUBMIT_ENV,
      mqttCredentialsFd: contract.MQTT_CREDENTIALS_FD_ENV,
      lpKeysUrl: contract.LP_KEYS_URL_ENV,
      ghKeysUrl: contract.GH_KEYS_URL_ENV,
    }).toEqual({
      server: 'TESTFLINGER_SERVER',
      stateDir: 'TESTFLINGER_STATE_DIR',
      agentDir: 'TESTFLINGER_AGENT_DIR',
      offlineMarkerDir: 'TESTFLINGER_OFFLINE_MARKER_DIR',
      lockScope: 'TESTFLINGER_AGENT_LOCK_SCOPE',
      testSandbox: 'TESTFLINGER_TEST_SANDBOX',
      sandboxProgram: 'TESTFLINGER_SANDBOX_PROGRAM',
      containment: 'TESTFLINGER_CONTAINMENT',
      maxProcesses: 'TESTFLINGER_MAX_PROCESSES',
      maxMemory: 'TESTFLINGER_MAX_MEMORY',
      metricsHost: 'TESTFLINGER_METRICS_HOST',
      tokenFd: 'TESTFLINGER_TOKEN_FD',
      mqttBroker: 'TESTFLINGER_MQTT_BROKER',
      mqttTopicPrefix: 'TESTFLINGER_MQTT_TOPIC_PREFIX',
      mqttSubmit: 'TESTFLINGER_MQTT_SUBMIT',
      mqttCredentialsFd: 'TESTFLINGER_MQTT_CREDENTIALS_FD',
      lpKeysUrl: 'TESTFLINGER_LP_KEYS_URL',
      ghKeysUrl: 'TESTFLINGER_GH_KEYS_URL',
    });
  });

  it("names upstream's files in the job's run directory that the agent and the connector share", () => {
    expect([contract.JOB_FILE, contract.DEVICE_INFO_FILE, contract.CONNECTOR_ERROR_FILE, contract.serialLogFile('provision')]).toEqual([
      'testflinger.json',
      'device-info.json',
      'device-connector-error.json',
      'provision-serial.log',
    ]);
  });

  it("keeps upstream's exit code for a device that could not be recovered", () => {
    expect(contract.EXIT_RECOVERY_FAILED).toBe(46);
  });

  it("lists upstream's phases in the order the agent runs them, the connector's too", () => {
    expect(contract.PHASES).toEqual(['setup', 'provision', 'firmware_update', 'test', 'allocate', 'reserve', 'cleanup']);
    expect(CONNECTOR_PHASES).toBe(contract.PHASES);
    expect(AGENT_STATES).toEqual(['waiting', ...contract.PHASES, 'offline', 'maintenance', 'restart']);
  });

  it('names the MQTT series an agent exports only with MQTT on', () => {
    expect([contract.MQTT_DROPPED_SERIES, contract.MQTT_CONNECTED_SERIES]).toEqual(['testflinger_agent_mqtt_messages_dropped_total', 'testflinger_agent_mqtt_connected']);
  });

  it('names the series and labels the charm reads back from each agent', () => {
    expect([contract.STATE_SERIES, contract.JOB_IN_PROGRESS_SERIES, contract.LAST_POLL_SERIES, contract.STATE_LABEL, contract.JOB_ID_LABEL]).toEqual([
      'testflinger_agent_state',
      'testflinger_agent_job_in_progress',
      'testflinger_agent_last_successful_poll_timestamp_seconds',
      'state',
      'job_id',
    ]);
  });

  it("is what the charm reads in the agent's own exposition", () => {
    const metrics = new AgentMetrics();
    metrics.setAgent('dev-1');
    metrics.setState('provision');
    metrics.setJob('job-7');
    metrics.markPoll(1_700_000_000_000);
    expect(parseAgentView(metrics.render())).toEqual({ state: 'provision', jobId: 'job-7', lastPoll: 1_700_000_000 });
  });

  it('is what the root wrapper exports', () => {
    const wrapper = fs.readFileSync(path.join(ROOT, 'tf-cmd-scripts', 'testflinger-agent-contained'), 'utf8');
    expect(wrapper).toMatch(new RegExp(`^\\s*export ${contract.TOKEN_FD_ENV}=3$`, 'm'));
    expect(wrapper).toMatch(new RegExp(`^\\s*export ${contract.MQTT_CREDENTIALS_FD_ENV}=4$`, 'm'));
    expect(wrapper).toContain(`\${${contract.MAX_PROCESSES_ENV}:-}`);
    expect(wrapper).toContain(`\${${contract.MAX_MEMORY_ENV}:-}`);
  });
});

/** Every .ts file under src/, as [path, text]. */
function sources(dir = path.join(ROOT, 'src')): [string, string][] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry): [string, string][] => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') ? [[path.relative(ROOT, full), fs.readFileSync(full, 'utf8')]] : [];
  });
}

describe('one copy of the contract', () => {
  /** Names that are not a contract between the parts: the connector's own, to its askpass script. */
  const PRIVATE = new Set(['TESTFLINGER_DEVICE_PASSWORD']);
  /** Files still holding their own copy of a name, each pinned equal to the contract's above. */
  it('spells the variable names only in src/common/contract.ts', () => {
    const copies = sources()
      .filter(([file]) => file !== path.join('src', 'common', 'contract.ts'))
      .flatMap(([file, text]) => [...text.matchAll(/['"`]?(TESTFLINGER_[A-Z_]+)(['"`]|\s*:\s)/g)].map((m) => `${file}: ${m[1]}`))
      .filter((hit) => !PRIVATE.has(hit.split(': ')[1] as string));
    expect(copies).toEqual([]);
  });

  it("spells the phase list and the exit code only in src/common/contract.ts", () => {
    const copies = sources()
      .filter(([file]) => file !== path.join('src', 'common', 'contract.ts'))
      .filter(([, text]) => /'provision',\s*'firmware_update',\s*'test',\s*'allocate'/.test(text) || /EXIT_RECOVERY_FAILED\s*=\s*46/.test(text))
      .map(([file]) => file);
    expect(copies).toEqual([]);
  });
});
