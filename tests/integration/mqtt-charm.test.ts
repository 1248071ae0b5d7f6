/**
 * The charm's MQTT options, one event at a time (the harness), with a real mosquitto on
 * 127.0.0.1 for the unit's summary: off changes nothing, bad values block naming the option,
 * the password reaches only a root-only file, and a broker that is down never fails a hook.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostTopic } from '../../src/agent/mqtt/topics';
import { MQTT_BROKER_ENV, MQTT_SUBMIT_ENV, MQTT_TOPIC_PREFIX_ENV } from '../../src/common/contract';
import { charmHarness, labRepo, programDir } from '../helpers/charm';
import type { ConfigRepo } from '../helpers/gitrepo';
import { haveMosquitto, TestMosquitto, Watcher } from '../helpers/mosquitto';
import { freePort } from '../helpers/sshd';
import { eventually } from '../helpers/tmp';

jest.setTimeout(60_000);
const describeWithBroker = haveMosquitto() ? describe : describe.skip;

function config(repo: ConfigRepo, extra: Record<string, unknown> = {}) {
  return { 'config-repo': repo.url, 'config-dir': 'lab1', ...extra };
}

function filesUnder(root: string): string[] {
  return fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }).map(String) : [];
}

const DEFAULT_PREFIX = 'testflinger/test-model/testflinger-agent-host-0';
const credentialsFile = (root: string) => path.join(root, 'var/lib/testflinger-agent/mqtt_credentials');

describe('MQTT options', () => {
  it.each([
    ['mqtt-broker', { 'mqtt-broker': 'http://broker:1883' }, /^mqtt-broker must be mqtt:\/\/host:port/],
    ['mqtt-broker', { 'mqtt-broker': 'mqtt://u:p@broker:1883' }, /^mqtt-broker must be mqtt:\/\/host:port.*credentials go in mqtt-credentials-secret/],
    ['mqtt-topic-prefix', { 'mqtt-broker': 'mqtt://broker:1883', 'mqtt-topic-prefix': 'lab/+/x' }, /^mqtt-topic-prefix must not hold the wildcards/],
    ['mqtt-topic-prefix', { 'mqtt-broker': 'mqtt://broker:1883', 'mqtt-topic-prefix': 'lab//x' }, /^mqtt-topic-prefix has an empty topic level/],
    ['mqtt-credentials-secret', { 'mqtt-credentials-secret': 'secret:mqtt1' }, /^mqtt-credentials-secret needs mqtt-broker/],
    ['mqtt-submit', { 'mqtt-submit': true }, /^mqtt-submit needs mqtt-broker/],
    ['mqtt-topic-prefix', { 'mqtt-topic-prefix': 'lab' }, /^mqtt-topic-prefix needs mqtt-broker/],
  ])('%s: a bad value blocks naming it, and the agents keep their last good state', async (_option, bad, expected) => {
    const { ctx, root } = charmHarness();
    const repo = labRepo('agent-1');
    await ctx.run(ctx.on.configChanged(), { config: config(repo) });
    const before = filesUnder(root).sort();
    const program = fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8');
    const out = await ctx.run(ctx.on.configChanged(), { config: config(repo, bad) });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toMatch(expected);
    expect(filesUnder(root).sort()).toEqual(before);
    expect(fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8')).toBe(program);
  });

  it('off (the default) gives the agents no MQTT environment, option or file', async () => {
    const { ctx, root } = charmHarness();
    await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1'), { 'mqtt-broker': '' }) });
    const program = fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8');
    expect(program).not.toMatch(/MQTT|mqtt/);
    expect(fs.existsSync(credentialsFile(root))).toBe(false);
  });

  it('on, gives each agent the broker, the default prefix and the credentials file, and the password only to that file', async () => {
    const { ctx, root } = charmHarness();
    const secrets = { 'secret:mqtt1': { username: 'tf-agents', password: 'pa55-word-7' } };
    const broker = `mqtt://127.0.0.1:${await freePort()}`;
    const cfg = config(labRepo('agent-1'), { 'mqtt-broker': broker, 'mqtt-credentials-secret': 'secret:mqtt1', 'mqtt-submit': true });
    const out = await ctx.run(ctx.on.configChanged(), { config: cfg, secrets });
    expect(out.unitStatus?.name).not.toBe('blocked');
    const program = fs.readFileSync(path.join(programDir(root), 'agent-1.conf'), 'utf8');
    expect(program).toContain(`${MQTT_BROKER_ENV}="${broker}"`);
    expect(program).toContain(`${MQTT_TOPIC_PREFIX_ENV}="${DEFAULT_PREFIX}"`);
    expect(program).toContain(`${MQTT_SUBMIT_ENV}="on"`);
    expect(program).toMatch(new RegExp(`--mqtt-credentials-file ${credentialsFile(root)}$`, 'm'));
    expect(program).not.toContain('pa55-word-7');
    expect(fs.statSync(credentialsFile(root)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(credentialsFile(root), 'utf8'))).toEqual({ username: 'tf-agents', password: 'pa55-word-7' });
    // A new revision of the secret is written over the same file.
    const rotated = { 'secret:mqtt1': { username: 'tf-agents', password: 'n3w-word' } };
    await ctx.run(ctx.on.secretChanged({ id: 'secret:mqtt1', revision: 2 }), { ...out, secrets: rotated });
    expect(JSON.parse(fs.readFileSync(credentialsFile(root), 'utf8'))).toMatchObject({ password: 'n3w-word' });
    // Turned off: the password leaves the host with it.
    await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1')), secrets: rotated });
    expect(fs.existsSync(credentialsFile(root))).toBe(false);
  });

  it('blocks naming mqtt-credentials-secret when the secret lacks a password, and keeps the agents', async () => {
    const { ctx, root } = charmHarness();
    const cfg = config(labRepo('agent-1'), { 'mqtt-broker': `mqtt://127.0.0.1:${await freePort()}`, 'mqtt-credentials-secret': 'secret:mqtt1' });
    const out = await ctx.run(ctx.on.configChanged(), { config: cfg, secrets: { 'secret:mqtt1': { username: 'tf-agents' } } });
    expect(out.unitStatus?.name).toBe('blocked');
    expect(out.unitStatus?.message).toBe("mqtt-credentials-secret: the secret's password is missing");
    expect(fs.existsSync(path.join(programDir(root), 'agent-1.conf'))).toBe(true);
    const fixed = await ctx.run(ctx.on.secretChanged({ id: 'secret:mqtt1', revision: 2 }), { ...out, secrets: { 'secret:mqtt1': { username: 'tf-agents', password: 'x' } } });
    expect(fixed.unitStatus?.name).not.toBe('blocked');
  });
});

describeWithBroker("the unit's summary on <prefix>/host", () => {
  it('is published retained after a hook, with the agents, their states and the charm', async () => {
    const broker = await new TestMosquitto().start();
    const { ctx } = charmHarness();
    await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1', 'agent-2'), { 'mqtt-broker': broker.url, 'mqtt-topic-prefix': 'lab/site-1' }) });
    const watch = await Watcher.open(broker.url, 'lab/site-1/#');
    const summary = await eventually(() => watch.last(hostTopic('lab/site-1')), 'the retained summary');
    expect(summary).toMatchObject({ unit: 'testflinger-agent-host/0', agents: { 'agent-1': expect.any(String), 'agent-2': expect.any(String) }, invalid: [], charm_revision: null });
    expect(watch.messages[0]?.retain).toBe(true);
  });

  it('is cleared when the unit is removed', async () => {
    const broker = await new TestMosquitto().start();
    const { ctx } = charmHarness();
    const deployed = await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1'), { 'mqtt-broker': broker.url, 'mqtt-topic-prefix': 'lab/site-2' }) });
    await ctx.run(ctx.on.remove(), deployed);
    // A subscriber that comes later gets no retained summary: the empty retained message cleared it.
    const late = await Watcher.open(broker.url, 'lab/site-2/host');
    await new Promise((r) => setTimeout(r, 500));
    expect(late.messages).toEqual([]);
  });

  it('is published with the credentials when the broker wants them', async () => {
    const broker = await new TestMosquitto({ charm: 'ch4rm', watcher: 'w' }).start();
    const { ctx } = charmHarness();
    const cfg = config(labRepo('agent-1'), { 'mqtt-broker': broker.url, 'mqtt-credentials-secret': 'secret:mqtt1' });
    await ctx.run(ctx.on.configChanged(), { config: cfg, secrets: { 'secret:mqtt1': { username: 'charm', password: 'ch4rm' } } });
    const watch = await Watcher.open(broker.url, `${DEFAULT_PREFIX}/host`, { username: 'watcher', password: 'w' });
    await eventually(() => watch.last(hostTopic(DEFAULT_PREFIX)), 'the retained summary');
  });

  it('never fails or holds up a hook when the broker is down', async () => {
    const { ctx } = charmHarness();
    const started = Date.now();
    const out = await ctx.run(ctx.on.configChanged(), { config: config(labRepo('agent-1'), { 'mqtt-broker': `mqtt://127.0.0.1:${await freePort()}` }) });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(out.unitStatus?.name).not.toBe('blocked');
    expect(out.unitStatus?.name).not.toBe('error');
    expect(out.logs.map((l) => l.message).join('\n')).toMatch(/mqtt: host summary not published to mqtt:\/\/127\.0\.0\.1:\d+/);
  });
});
