/** The agent's MQTT side without a broker: names it accepts, what it publishes when, jobs it submits, and that it costs nothing when off. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentMetrics, EXPORTED_SERIES, MQTT_SERIES } from '../../src/agent/metrics';
import { MqttStatusPublisher, WILL_REASON, type AgentStatusMessage } from '../../src/agent/mqtt/status';
import { checkSubmission } from '../../src/agent/mqtt/submit';
import { agentTopics, checkBrokerUrl, checkTopicPrefix, defaultTopicPrefix, hostTopic } from '../../src/agent/mqtt/topics';
import type { ServerApi } from '../../src/agent/api';
import { parseAgentConfig } from '../../src/agent/config';
import { silentLogger } from '../../src/agent/logger';
import { startAgentMqtt } from '../../src/agent/mqtt/agent';
import { charmRevision } from '../../src/charm/mqtthost';
import { MQTT_BROKER_ENV, MQTT_TOPIC_PREFIX_ENV } from '../../src/common/contract';
import { repoRoot, tempDir } from '../helpers/tmp';

describe('MQTT names', () => {
  it.each(['mqtt://broker.lab:1883', 'mqtts://10.0.0.5:8883', 'mqtt://broker'])('accepts the broker %s', (url) => {
    expect(checkBrokerUrl(url)).toBe(url);
  });

  it.each([
    ['http://broker:1883', /must be mqtt:\/\/host:port/],
    ['mqtt://user:pw@broker:1883', /credentials go in mqtt-credentials-secret/],
    ['mqtt://broker:1883/path', /must be mqtt:\/\//],
    ['mqtt://broker:99999', /port outside/],
    ['mqtt://[::1]:1883', /IPv4/],
    ['mqtt://broker:1883",X="y', /must be mqtt:\/\//],
  ])('refuses the broker %s', (url, reason) => {
    expect(() => checkBrokerUrl(url)).toThrow(reason);
  });

  it.each([
    ['lab/+/x', /wildcards/],
    ['lab/#', /wildcards/],
    ['lab//x', /empty topic level/],
    ['/lab', /empty topic level/],
    ['lab/', /empty topic level/],
    ['lab/a b', /levels must be/],
    ['$SYS/x', /levels must be/],
    ['x'.repeat(201), /longer than 200/],
  ])('refuses the topic prefix %s', (prefix, reason) => {
    expect(() => checkTopicPrefix(prefix)).toThrow(reason);
  });

  it('makes the default prefix from the model and the unit, the unit made one level', () => {
    expect(defaultTopicPrefix('lab-model', 'tf-host/3')).toBe('testflinger/lab-model/tf-host-3');
    expect(checkTopicPrefix(defaultTopicPrefix('lab-model', 'tf-host/3'))).toBeTruthy();
    expect(agentTopics('p/q', 'dev-1')).toEqual({ status: 'p/q/dev-1/status', lastJob: 'p/q/dev-1/last_job', log: 'p/q/dev-1/log', submit: 'p/q/dev-1/submit', submitStatus: 'p/q/dev-1/submit_status' });
    expect(hostTopic('p/q')).toBe('p/q/host');
  });
});

describe('the status an agent publishes', () => {
  function publisher() {
    const sent: { topic: string; body: AgentStatusMessage; retain: boolean }[] = [];
    let now = Date.parse('2026-01-01T00:00:00Z');
    const status = new MqttStatusPublisher((topic, payload, { retain }) => sent.push({ topic, body: JSON.parse(payload), retain }), agentTopics('lab', 'dev-1'), ['q1', 'q2'], () => (now += 1000));
    return { status, sent };
  }

  it('publishes a change once, retained, with since moving only when the state changes', () => {
    const { status, sent } = publisher();
    status.state({ state: 'waiting', offlineReason: null });
    status.state({ healthy: true });
    expect(sent).toEqual([]);
    status.state({ jobId: 'j1' });
    status.state({ state: 'setup', phase: 'setup' });
    status.state({ healthy: false });
    expect(sent.map((s) => [s.topic, s.retain, s.body.state, s.body.job_id, s.body.healthy])).toEqual([
      ['lab/dev-1/status', true, 'waiting', 'j1', true],
      ['lab/dev-1/status', true, 'setup', 'j1', true],
      ['lab/dev-1/status', true, 'setup', 'j1', false],
    ]);
    expect(sent[2]?.body.since).toBe(sent[1]?.body.since);
    expect(sent[1]?.body.since).not.toBe(sent[0]?.body.since);
    expect(sent[0]?.body.queues).toEqual(['q1', 'q2']);
  });

  it('has a last will that says the agent is offline, and why', () => {
    const { status } = publisher();
    status.state({ jobId: 'j1', state: 'test', phase: 'test' });
    expect(JSON.parse(status.willMessage())).toMatchObject({ state: 'offline', job_id: 'j1', phase: null, healthy: false, offline_reason: WILL_REASON });
  });
});

describe('a job submitted over MQTT', () => {
  const queues = ['q1', 'q2'];
  const check = (job: unknown) => checkSubmission(Buffer.from(typeof job === 'string' ? job : JSON.stringify(job)), queues);

  it("goes to the named queue of this agent's, or its first", () => {
    expect(check({ job_queue: 'q2', test_data: { test_cmds: 'x' } })).toEqual({ job: { job_queue: 'q2', test_data: { test_cmds: 'x' } } });
    expect(check({ test_data: {} })).toEqual({ job: { job_queue: 'q1', test_data: {} } });
  });

  it.each([
    [{ job_queue: 'other' }, /not one of this agent's queues/],
    [{ job_queue: 'q1', job_id: 'x' }, /job_id: not a key a submitted job may set/],
    [{ job_queue: 'q1', test_data: 'x' }, /test_data: Expected object/],
    [{ job_queue: 'q1/../x' }, /job_queue: must be letters/],
    ['[1', /not JSON/],
    ['x'.repeat(300 * 1024), /larger than/],
  ])('is refused: %j', (job, reason) => {
    const result = check(job);
    expect('error' in result && result.error).toMatch(reason);
  });
});

describe('MQTT off', () => {
  it('leaves MQTT.js out of the agent bundle: it sits in a bundle of its own, read only when MQTT is on', () => {
    const agent = fs.readFileSync(path.join(repoRoot, 'dist', 'testflinger-agent.js'), 'utf8');
    const bundle = fs.readFileSync(path.join(repoRoot, 'dist', 'testflinger-agent-mqtt.js'), 'utf8');
    expect(bundle).toMatch(/connack/i);
    expect(agent).not.toMatch(/connack/i);
  });

  it('exports no MQTT series, and both once the link is tracked', () => {
    const names = (metrics: AgentMetrics) => metrics.render().split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    const off = new AgentMetrics();
    off.setAgent('dev-1');
    expect(names(off).sort()).toEqual([...EXPORTED_SERIES].sort());
    const on = new AgentMetrics();
    on.setAgent('dev-1');
    on.trackMqtt(() => ({ connected: false, dropped: 3 }));
    expect(names(on).sort()).toEqual([...EXPORTED_SERIES, ...MQTT_SERIES].sort());
    expect(on.render()).toContain('testflinger_agent_mqtt_messages_dropped_total{agent_id="dev-1"} 3');
    expect(on.render()).toContain('testflinger_agent_mqtt_connected{agent_id="dev-1"} 0');
  });
});

describe('settings the agent is started with', () => {
  it('are checked again: a broker or prefix the charm would refuse starts no MQTT, and says why', () => {
    const errors: string[] = [];
    const log = { ...silentLogger, error: (m: string) => void errors.push(m) };
    const config = parseAgentConfig(JSON.stringify({ agent_id: 'dev-1', job_queues: ['q1'] }), 'test.conf');
    const start = (env: Record<string, string>) => startAgentMqtt({ env, config, log, metrics: new AgentMetrics(), api: {} as ServerApi });
    expect(start({ [MQTT_BROKER_ENV]: 'mqtt://broker:1883', [MQTT_TOPIC_PREFIX_ENV]: 'lab/#' })).toBeUndefined();
    expect(start({ [MQTT_BROKER_ENV]: 'http://broker', [MQTT_TOPIC_PREFIX_ENV]: 'lab' })).toBeUndefined();
    expect(errors).toEqual([expect.stringMatching(/^mqtt: not started: .*wildcards/), expect.stringMatching(/^mqtt: not started: .*must be mqtt:\/\//)]);
  });
});

describe("the charm's revision in the unit's summary", () => {
  it('is the number at the end of the charm URL Juju leaves in the charm directory, or null', () => {
    const dir = tempDir('charmdir');
    expect(charmRevision(dir)).toBeNull();
    fs.writeFileSync(path.join(dir, '.juju-charm'), 'ch:amd64/noble/testflinger-agent-host-12\n');
    expect(charmRevision(dir)).toBe('12');
    const linked = tempDir('charmdir');
    fs.symlinkSync(path.join(dir, '.juju-charm'), path.join(linked, '.juju-charm'));
    expect(charmRevision(linked)).toBeNull();
  });
});
