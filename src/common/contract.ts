/**
 * What the charm, the agent and the connector agree on, in one place: the environment each sets
 * for the next, the exit code that takes a device offline, the phases and the metric series the
 * charm reads back. Agents already deployed and upstream's tools rely on these values, so a
 * change here is a change of contract: tests/unit/contract.test.ts pins every one.
 */

// ---- environment the charm sets in an agent's program file (supervisord), read by the agent ----

/** The server, when the agent's conf has no server_address (the charm's testflinger-server). */
export const SERVER_ENV = 'TESTFLINGER_SERVER';
/**
 * The directory of this agent's own default basedirs (`<dir>/run`, `/logs`, `/results`), set by
 * the charm's program file on a unit: one user per agent cannot share `/tmp/testflinger`, where
 * the first agent's 0700 directories would lock the others out (docs/isolation.md).
 */
export const STATE_DIR_ENV = 'TESTFLINGER_STATE_DIR';
/** The agent's config directory (the config repo's link); its name is the agent's program name, and phase scripts find their files in it. */
export const AGENT_DIR_ENV = 'TESTFLINGER_AGENT_DIR';
/** Where the agent looks for offline marker files (/tmp on a unit). */
export const OFFLINE_MARKER_DIR_ENV = 'TESTFLINGER_OFFLINE_MARKER_DIR';
/**
 * Where the one-process-per-agent_id lock lives when the agent has no state dir (a sandbox root:
 * the charm's root, whatever each conf's logging_basedir says); with one, the lock is there.
 */
export const LOCK_SCOPE_ENV = 'TESTFLINGER_AGENT_LOCK_SCOPE';
/** `on` (the charm's `test-sandbox` option, default) or `off`; unset means off. */
export const TEST_SANDBOX_ENV = 'TESTFLINGER_TEST_SANDBOX';
/** The bubblewrap binary; the charm may point at its own copy (the one its AppArmor profile names). */
export const SANDBOX_PROGRAM_ENV = 'TESTFLINGER_SANDBOX_PROGRAM';
/** Forces a containment kind (tests, operators); an unavailable one falls back to the next. */
export const CONTAINMENT_ENV = 'TESTFLINGER_CONTAINMENT';
/** Processes (tasks) the agent's user may have: the charm's agent-max-processes. */
export const MAX_PROCESSES_ENV = 'TESTFLINGER_MAX_PROCESSES';
/** Bytes of memory: the charm's agent-max-memory (unset: no limit). */
export const MAX_MEMORY_ENV = 'TESTFLINGER_MAX_MEMORY';
/** The address the metrics port listens on (a sandbox keeps it on loopback); unset: every address. */
export const METRICS_HOST_ENV = 'TESTFLINGER_METRICS_HOST';
/** Set by the root wrapper on a unit (tf-cmd-scripts/testflinger-agent-contained): the token file's descriptor. */
export const TOKEN_FD_ENV = 'TESTFLINGER_TOKEN_FD';
/** The charm's mqtt-broker (`mqtt://` or `mqtts://host:port`); unset: the agent does not load MQTT at all. */
export const MQTT_BROKER_ENV = 'TESTFLINGER_MQTT_BROKER';
/** The unit's topic prefix (mqtt-topic-prefix or its default); the agent's topics are `<prefix>/<agent_id>/...`. */
export const MQTT_TOPIC_PREFIX_ENV = 'TESTFLINGER_MQTT_TOPIC_PREFIX';
/** `on` when the charm's mqtt-submit is true: the agent takes jobs from `<prefix>/<agent_id>/submit`. */
export const MQTT_SUBMIT_ENV = 'TESTFLINGER_MQTT_SUBMIT';
/** Set by the root wrapper on a unit: the descriptor of the broker credentials file (the agent's --mqtt-credentials-file). */
export const MQTT_CREDENTIALS_FD_ENV = 'TESTFLINGER_MQTT_CREDENTIALS_FD';

// ---- environment the connector reads (tests point these at 127.0.0.1) ----

/**
 * Set by the agent for the provision and cleanup phases of a multi agent only: the pipe
 * descriptor on which it feeds the agent's current access token, one per line (docs/security.md).
 */
export const SERVER_TOKEN_FD_ENV = 'TESTFLINGER_SERVER_TOKEN_FD';

/** Base URL of Launchpad's ssh keys (`lp:` in reserve_data.ssh_keys). */
export const LP_KEYS_URL_ENV = 'TESTFLINGER_LP_KEYS_URL';
/** Base URL of GitHub's ssh keys (`gh:` in reserve_data.ssh_keys). */
export const GH_KEYS_URL_ENV = 'TESTFLINGER_GH_KEYS_URL';

// ---- files in the job's run directory, between the agent and the connector ----

/** The job as the agent received it; the connector is called with its path. */
export const JOB_FILE = 'testflinger.json';
/** What the connector says about the device (`{"device_info": {...}}`); the agent sends it with the results. */
export const DEVICE_INFO_FILE = 'device-info.json';
/** Why a phase failed, as the connector saw it (`{"<phase>_exception_info": {...}}`). */
export const CONNECTOR_ERROR_FILE = 'device-connector-error.json';
/** The device's serial console during a phase, written by the connector, streamed by the agent. */
export function serialLogFile(phase: string): string {
  return `${phase}-serial.log`;
}

// ---- phases and exit codes ----

/** Every phase of a job, in the order the agent runs them; the connector takes the same names. */
export const PHASES = ['setup', 'provision', 'firmware_update', 'test', 'allocate', 'reserve', 'cleanup'] as const;
export type Phase = (typeof PHASES)[number];

/** A phase command exits with this when the device could not be recovered: the agent takes it offline. Upstream's value. */
export const EXIT_RECOVERY_FAILED = 46;

// ---- metric series the charm reads from each agent ----

/** 1 for the state the agent last reported (label `state`), 0 for the others. */
export const STATE_SERIES = 'testflinger_agent_state';
/** One sample, labelled `job_id`, while a job runs. */
export const JOB_IN_PROGRESS_SERIES = 'testflinger_agent_job_in_progress';
/** Unix seconds of the last poll the server answered. */
export const LAST_POLL_SERIES = 'testflinger_agent_last_successful_poll_timestamp_seconds';
/** MQTT messages the agent dropped (broker away, its bounded queue full); only with MQTT on. */
export const MQTT_DROPPED_SERIES = 'testflinger_agent_mqtt_messages_dropped_total';
/** 1 while the agent is connected to the broker, 0 otherwise; only with MQTT on. */
export const MQTT_CONNECTED_SERIES = 'testflinger_agent_mqtt_connected';
export const STATE_LABEL = 'state';
export const JOB_ID_LABEL = 'job_id';
