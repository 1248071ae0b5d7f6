/**
 * The MQTT password on a unit: the charm's file is root's alone (0600); the agent's root wrapper
 * opens it on descriptor 4 and the agent signs in to a real mosquitto with it. A job, run as the
 * agent's user without the sandbox, cannot read the file, the descriptor or /proc's view of it,
 * and finds the password in neither its environment nor the agent's command line (root needed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { agentTopics } from '../../src/agent/mqtt/topics';
import { writeHandedFile } from '../../src/charm/auth';
import { MQTT_BROKER_ENV, MQTT_TOPIC_PREFIX_ENV } from '../../src/common/contract';
import { DevServer } from '../../src/devserver';
import { removeChildCgroup } from '../helpers/cgroup';
import { haveMosquitto, TestMosquitto, Watcher } from '../helpers/mosquitto';
import { eventually, repoRoot, tempDir } from '../helpers/tmp';

/** `daemon` (uid 1) stands for an agent's user. */
const AGENT_USER = 'daemon';
const AGENT_UID = 1;
const PASSWORD = 'mqtt-pa55-9f3k';
const itAsRootWithBroker = process.getuid?.() === 0 && haveMosquitto() ? it : it.skip;

describe('an agent started by the root wrapper with MQTT on', () => {
  let server: DevServer;
  let agent: ChildProcess | undefined;
  const cgroupName = `mqtt-test-${process.pid}`;

  beforeEach(async () => {
    server = new DevServer();
    await server.start();
  });
  afterEach(async () => {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent?.once('exit', r));
    }
    await server.stop();
    removeChildCgroup(cgroupName);
  });

  itAsRootWithBroker('signs in to the broker through descriptor 4; its job cannot reach the password by any way tried', async () => {
    const broker = await new TestMosquitto({ 'tf-agents': PASSWORD, watcher: 'w' }).start();
    const watch = await Watcher.open(broker.url, 'lab/#', { username: 'watcher', password: 'w' });
    const secretDir = tempDir('mqtt-secret');
    fs.chmodSync(secretDir, 0o755);
    const credentials = path.join(secretDir, 'mqtt_credentials');
    writeHandedFile(credentials, JSON.stringify({ username: 'tf-agents', password: PASSWORD }), 'the MQTT credentials', { uid: 0, gid: 0 });

    const dir = tempDir('mqtt-agent');
    fs.chownSync(dir, AGENT_UID, AGENT_UID);
    const logs = path.join(dir, 'logs');
    // The password is put together at run time: the probes' own text (in the phase's environment) never holds it whole.
    const probes = [
      `P=$(printf '%s%s' ${PASSWORD.slice(0, 5)} ${PASSWORD.slice(5)})`,
      `cat ${credentials} >/dev/null 2>&1; echo "file=$?"`,
      `echo "fds=$(for n in 3 4 5 6 7 8 9; do (cat <&$n) 2>/dev/null; done | grep -c "$P")"`,
      `cat /proc/$(cat ${logs}/agent-m.pid)/fd/4 >/dev/null 2>&1; echo "procfd=$?"`,
      `echo "env=$(env | grep -c "$P")"`,
      `echo "argv=$(tr '\\0' ' ' </proc/$(cat ${logs}/agent-m.pid)/cmdline | grep -c "$P")"`,
    ].join('\n');
    const conf = path.join(dir, 'agent.conf');
    fs.writeFileSync(conf, JSON.stringify({
      agent_id: 'agent-m', server_address: server.url, job_queues: ['q1'], polling_interval: 0.1,
      execution_basedir: path.join(dir, 'run'), logging_basedir: logs, results_basedir: path.join(dir, 'results'),
      setup_command: 'true', test_command: probes, cleanup_command: 'true',
    }));
    const wrapper = path.join(repoRoot, 'tf-cmd-scripts', 'testflinger-agent-contained');
    const program = [process.execPath, path.join(repoRoot, 'dist', 'testflinger-agent.js'), '-c', conf, '--token-file', path.join(dir, 'none'), '--mqtt-credentials-file', credentials];
    agent = spawn('sh', [wrapper, AGENT_USER, cgroupName, ...program], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, TESTFLINGER_AGENT_LOCK_SCOPE: dir, [MQTT_BROKER_ENV]: broker.url, [MQTT_TOPIC_PREFIX_ENV]: 'lab' },
      stdio: 'ignore',
    });

    const id = server.submitJob({ job_queue: 'q1', test_data: {} });
    await eventually(() => server.resultView(id)?.['cleanup_status'] !== undefined, `job ${id} done`, 60_000);
    // Signed in: this broker takes no one without the password, and the agent's status is there.
    await eventually(() => watch.last(agentTopics('lab', 'agent-m').lastJob)?.['id'] === id, 'the job on the broker');
    const seen = Object.fromEntries([...String(server.resultView(id)?.['test_output']).matchAll(/^(\w+)=(\S*)$/gm)].map((m) => [m[1], m[2]]));
    expect(seen).toEqual({ file: '1', fds: '0', procfd: '1', env: '0', argv: '0' });
    expect(fs.readFileSync(path.join(logs, 'testflinger-agent-agent-m.log'), 'utf8')).not.toContain(PASSWORD);
  }, 90_000);
});
