/**
 * Live status over MQTT: the real agent program (dist/) against the dev server and a real Debian
 * mosquitto on 127.0.0.1, watched by a real MQTT client. The agent publishes its status, its last
 * job and its live output; a broker that is away, restarted or refuses it never costs a job anything.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MQTT_BROKER_ENV, MQTT_SUBMIT_ENV, MQTT_TOPIC_PREFIX_ENV, METRICS_HOST_ENV } from '../../src/common/contract';
import { STOPPED_REASON, WILL_REASON, type AgentStatusMessage, type LastJobMessage, type LogMessage } from '../../src/agent/mqtt/status';
import { agentTopics } from '../../src/agent/mqtt/topics';
import { DevServer } from '../../src/devserver';
import { AgentProcess } from '../helpers/agentprocess';
import { haveMosquitto, TestMosquitto, Watcher } from '../helpers/mosquitto';
import { freePort } from '../helpers/sshd';
import { eventually } from '../helpers/tmp';

const PREFIX = 'testflinger/lab/tf-host-0';
const topics = agentTopics(PREFIX, 'agent-u');
const describeWithBroker = haveMosquitto() ? describe : describe.skip;
jest.setTimeout(120_000);

let server: DevServer;
let agents: AgentProcess[] = [];

beforeEach(async () => {
  server = new DevServer();
  await server.start();
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await server.stop();
});

function startAgent(broker: TestMosquitto, conf: Record<string, unknown> = {}, env: Record<string, string> = {}, options: string[] = []): AgentProcess {
  const agent = new AgentProcess({ [MQTT_BROKER_ENV]: broker.url, [MQTT_TOPIC_PREFIX_ENV]: PREFIX, ...env }).start(server.url, { test_command: 'echo test phase', ...conf }, options);
  agents.push(agent);
  return agent;
}

const finished = (id: string) => eventually(() => server.resultView(id)?.['job_state'] === 'complete', `job ${id} to complete`, 60_000);
const statuses = (watch: Watcher) => watch.json<AgentStatusMessage>(topics.status);

/** The states in order, each change once. */
function stateChanges(watch: Watcher): string[] {
  return statuses(watch)
    .map((s) => s.state)
    .filter((state, i, all) => i === 0 || all[i - 1] !== state);
}

describeWithBroker('an agent publishing to MQTT', () => {
  it('publishes its status through a whole job, then the job as its last, and the output live', async () => {
    const broker = await new TestMosquitto().start();
    const watch = await Watcher.open(broker.url, `${PREFIX}/#`);
    startAgent(broker);
    await eventually(() => statuses(watch).length > 0, 'the first status');
    const id = server.submitJob({ job_queue: 'q1', test_data: { test_cmds: 'x' } });
    await finished(id);
    await eventually(() => watch.last<LastJobMessage>(topics.lastJob)?.id === id, 'last_job');

    expect(stateChanges(watch)).toEqual(['waiting', 'setup', 'test', 'cleanup', 'waiting']);
    const during = statuses(watch).filter((s) => s.state === 'test');
    expect(during[0]).toMatchObject({ job_id: id, phase: 'test', queues: ['q1'], healthy: true, offline_reason: null });
    expect(statuses(watch).at(-1)).toMatchObject({ state: 'waiting', job_id: null, phase: null });
    expect(Date.parse(String(statuses(watch).at(-1)?.since))).not.toBeNaN();
    expect(watch.last<LastJobMessage>(topics.lastJob)).toMatchObject({ id, state: 'complete', phases: { setup: 0, test: 0, cleanup: 0 } });
    expect(watch.messages.find((m) => m.topic === topics.status)?.retain).toBe(false); // live, as it happened
    const log = watch.json<LogMessage>(topics.log);
    expect(log.filter((m) => m.job_id === id && m.kind === 'output').map((m) => m.text).join('')).toMatch(/test phase/);
    expect(watch.messages.filter((m) => m.topic === topics.log).every((m) => !m.retain)).toBe(true);

    // A client that comes later gets the status and the last job from the broker (retained).
    const later = await Watcher.open(broker.url, `${PREFIX}/#`);
    await eventually(() => later.last<LastJobMessage>(topics.lastJob)?.id === id && later.last(topics.status), 'retained messages');
    expect(later.messages.filter((m) => m.topic !== topics.log).every((m) => m.retain)).toBe(true);
  });

  it('is set offline by its last will when it is killed (kill -9), and by itself when it stops', async () => {
    const broker = await new TestMosquitto().start();
    const watch = await Watcher.open(broker.url, `${PREFIX}/#`);
    const killed = startAgent(broker);
    await eventually(() => statuses(watch).at(-1)?.state === 'waiting', 'waiting');
    await killed.kill();
    await eventually(() => statuses(watch).at(-1)?.state === 'offline', 'the last will');
    expect(statuses(watch).at(-1)).toMatchObject({ state: 'offline', healthy: false, offline_reason: WILL_REASON });

    const stopped = startAgent(broker, {}, {}, []);
    await eventually(() => statuses(watch).at(-1)?.state === 'waiting', 'waiting again');
    await stopped.stop();
    await eventually(() => statuses(watch).at(-1)?.offline_reason === STOPPED_REASON, 'the stopped status');
    expect(statuses(watch).at(-1)?.state).toBe('offline');
  });

  it('loses nothing on the Testflinger side when the broker restarts mid-job, and publishes again after', async () => {
    const broker = await new TestMosquitto().start();
    const watch = await Watcher.open(broker.url, `${PREFIX}/#`);
    startAgent(broker, { test_command: 'for i in $(seq 1 40); do echo line-$i; sleep 0.1; done' });
    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => statuses(watch).at(-1)?.state === 'test', 'the test phase');
    await broker.restart(500);
    await finished(id);

    const output = String(server.resultView(id)?.['test_output']);
    for (let i = 1; i <= 40; i++) expect(output).toContain(`line-${i}\n`);
    const fragments = server.fragments(id);
    expect(fragments.map((f) => f.fragment_number)).toEqual(fragments.map((_, i) => i));
    // Restarted again while the agent idles: the broker kept nothing (no persistence), and the
    // agent, with nothing new to say, publishes its retained topics again on reconnecting.
    await broker.restart();
    const after = await Watcher.open(broker.url, `${PREFIX}/#`);
    await eventually(() => after.last<LastJobMessage>(topics.lastJob)?.id === id && after.last<AgentStatusMessage>(topics.status)?.state === 'waiting', 'status and last_job after the restart', 60_000);
  });

  it('runs jobs when the broker refuses its credentials, says so in its metrics and log, and connects once they are right', async () => {
    const broker = await new TestMosquitto({ 'tf-agents': 'right-password', watcher: 'watch' }).start();
    const watch = await Watcher.open(broker.url, `${PREFIX}/#`, { username: 'watcher', password: 'watch' });
    const port = await freePort();
    const agent = new AgentProcess({ [MQTT_BROKER_ENV]: broker.url, [MQTT_TOPIC_PREFIX_ENV]: PREFIX, [METRICS_HOST_ENV]: '127.0.0.1' });
    const credentials = path.join(agent.dir, 'mqtt-credentials');
    fs.writeFileSync(credentials, JSON.stringify({ username: 'tf-agents', password: 'wrong-password' }), { mode: 0o600 });
    fs.chownSync(credentials, 65534, 65534);
    agents.push(agent.start(server.url, { test_command: 'echo test phase' }, ['-p', String(port), '--mqtt-credentials-file', credentials]));
    const metric = async () => (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).match(/^testflinger_agent_mqtt_connected\{[^}]*\} (\d)$/m)?.[1];
    await eventually(async () => (await metric()) === '0' && /mqtt: .*Not authorized/.test(agent.log()), 'the refusal in the metrics and the log');

    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await finished(id);
    expect(watch.messages.filter((m) => m.topic.startsWith(`${PREFIX}/agent-u/`))).toEqual([]);
    expect(agent.log()).not.toContain('wrong-password');

    // The charm rewrote the credentials: the next attempt reads them.
    fs.writeFileSync(credentials, JSON.stringify({ username: 'tf-agents', password: 'right-password' }));
    await eventually(() => watch.last<AgentStatusMessage>(topics.status)?.state === 'waiting', 'the status once connected', 60_000);
    expect(await metric()).toBe('1');
    expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toMatch(/^testflinger_agent_mqtt_messages_dropped_total\{agent_id="agent-u"\} \d+$/m);
  });

  it("masks the job's secrets in the live log as in the output sent to the server", async () => {
    const broker = await new TestMosquitto().start();
    const watch = await Watcher.open(broker.url, `${PREFIX}/#`);
    startAgent(broker, { test_command: 'echo "token=$API_TOKEN"' });
    const id = server.submitJob({ job_queue: 'q1', test_data: { secrets: { API_TOKEN: 's3cr3t-value-42' } } });
    await finished(id);
    await eventually(() => watch.last<LastJobMessage>(topics.lastJob)?.id === id, 'last_job');
    const text = watch.json<LogMessage>(topics.log).map((m) => m.text).join('');
    expect(text).toContain('token=****');
    expect(watch.messages.some((m) => m.text.includes('s3cr3t-value-42'))).toBe(false);
    expect(String(server.resultView(id)?.['test_output'])).toContain('token=****');
  });

  it('takes jobs from its submit topic for its own queues only, and answers on submit_status', async () => {
    const broker = await new TestMosquitto().start();
    const watch = await Watcher.open(broker.url, `${PREFIX}/#`);
    startAgent(broker, {}, { [MQTT_SUBMIT_ENV]: 'on' });
    await eventually(() => statuses(watch).length > 0, 'the first status');
    const replies = () => watch.json<{ job_id?: string; job_queue?: string; error?: string }>(topics.submitStatus);
    // The agent subscribes on connect before it publishes anything: its first status means it listens.
    await watch.publish(topics.submit, JSON.stringify({ job_queue: 'q1', test_data: { test_cmds: 'x' } }));
    await eventually(() => replies().length > 0, 'a reply');
    const accepted = replies()[0];
    expect(accepted).toMatchObject({ job_queue: 'q1' });
    const id = String(accepted?.job_id);
    await finished(id);
    await eventually(() => watch.last<LastJobMessage>(topics.lastJob)?.id === id, 'the submitted job as last_job');

    const before = replies().length;
    await watch.publish(topics.submit, JSON.stringify({ job_queue: 'someone-elses', test_data: {} }));
    await watch.publish(topics.submit, JSON.stringify({ job_queue: 'q1', test_data: {}, job_id: 'chosen-id' }));
    await watch.publish(topics.submit, 'not json');
    await watch.publish(topics.submit, `"${'x'.repeat(300 * 1024)}"`);
    // Larger than the agent takes at all (MQTT 5's maximum packet size): the broker never sends it.
    await watch.publish(topics.submit, `"${'x'.repeat(2 * 1024 * 1024)}"`);
    await watch.publish(topics.submit, JSON.stringify({ job_queue: 'q1', test_data: {} }), { retain: true });
    await eventually(() => replies().length >= before + 5, 'five refusals');
    expect(replies().slice(before).map((r) => r.error)).toEqual([
      expect.stringMatching(/job_queue "someone-elses" is not one of this agent's queues/),
      expect.stringMatching(/job_id: not a key a submitted job may set/),
      'refused: not JSON',
      'refused: larger than 262144 bytes',
      expect.stringMatching(/^refused: a retained message/),
    ]);
    expect([...server.jobs.values()].map((j) => j.queue)).toEqual(['q1']);
  });
});
