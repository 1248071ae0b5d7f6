/** What the status says of an agent that does not run: its own last error, sanitised and capped. */
import { BlockedStatus, WaitingStatus } from '../../src/ops';
import { parseCharmConfig } from '../../src/charm/config';
import { emptyHostState, type HostState } from '../../src/charm/state';
import { lastErrorLine, programsToExplain, STATUS_MAX, unitStatus } from '../../src/charm/unitstatus';
import { charmHarness, labRepo } from '../helpers/charm';

const config = parseCharmConfig({ 'config-repo': 'https://git.example/lab.git', 'config-dir': 'lab1' });
const applied = (names: string[]): HostState => ({ ...emptyHostState(), appliedPrograms: Object.fromEntries(names.map((n) => [n, 'hash'])) });
const programs = (states: Record<string, string>) => Object.entries(states).map(([name, state]) => ({ name, state, description: '' }));

describe('the last error line of an agent log', () => {
  const logged = (level: string, message: string) => `2026-12-06T02:00:00.000Z agent-b ${level} ${message}`;

  it('is the last ERROR line the agent logged, or the last line it wrote to stderr on a fatal error', () => {
    const tail = [logged('INFO', 'starting'), logged('ERROR', 'cannot reach the server'), 'Error: EACCES', '    at mkdirSync (node:fs:1:1)', 'testflinger-agent: fatal: EACCES: permission denied, mkdir \'/tmp/tfa/agent-b\'', ''].join('\n');
    expect(lastErrorLine(tail, false)).toBe("fatal: EACCES: permission denied, mkdir '/tmp/tfa/agent-b'");
    expect(lastErrorLine([logged('ERROR', 'first'), logged('WARNING', 'later warning'), logged('INFO', 'x')].join('\n'), false)).toBe('first');
  });

  it('is none when no line is an error, and never the partial first line of a cut tail', () => {
    expect(lastErrorLine([logged('INFO', 'all fine'), '    at x'].join('\n'), false)).toBeUndefined();
    expect(lastErrorLine(`testflinger-agent: cut in the middle\n${logged('INFO', 'fine')}`, true)).toBeUndefined();
  });

  it('carries no control or invisible characters, and no token-like run', () => {
    const line = lastErrorLine(`testflinger-agent: bad\u001b[31m red\u202e evil\u0085 token eyJhbGciOiJIUzI1NiJ9eyJzdWIiOiIxMjM0NTY3ODkwIn0 end\r\n`, false);
    expect(line).toBe('bad [31m red evil token **** end');
  });
});

describe('the status of agents that do not run', () => {
  it('names the agent with its own last error, quoted', () => {
    const status = unitStatus(config, applied(['agent-a', 'agent-b']), programs({ 'agent-a': 'RUNNING', 'agent-b': 'FATAL' }), { startErrors: new Map([['agent-b', 'cannot create /tmp/tfa/agent-b: permission denied']]) });
    expect(status).toEqual(new BlockedStatus('agent-b cannot start: "cannot create /tmp/tfa/agent-b: permission denied"; 1 of 2 agents running'));
  });

  it('cuts long errors so that the whole line stays within 200 characters, and names agents without an error by state', () => {
    const names = ['agent-a', 'agent-b', 'agent-c', 'agent-d', 'agent-e'];
    const long = `${'x'.repeat(500)}: the reason`;
    const status = unitStatus(config, applied(names), programs({ 'agent-a': 'BACKOFF', 'agent-b': 'FATAL', 'agent-c': 'EXITED', 'agent-d': 'FATAL', 'agent-e': 'RUNNING' }), { startErrors: new Map([['agent-a', long], ['agent-c', long]]) });
    expect(status.message.length).toBeLessThanOrEqual(STATUS_MAX);
    expect(status.message).toMatch(/^agent-a cannot start: "x+…x+: the reason", agent-b FATAL, agent-c cannot start: "x+…x+: the reason" and 1 more; 1 of 5 agents running$/);
    // Notes the health check puts first (a crash loop) get their room: the line still ends whole.
    const roomy = unitStatus(config, applied(names), programs({ 'agent-a': 'FATAL', 'agent-b': 'RUNNING', 'agent-c': 'RUNNING', 'agent-d': 'RUNNING', 'agent-e': 'RUNNING' }), { startErrors: new Map([['agent-a', long]]), room: 120 });
    expect(roomy.message.length).toBe(120);
    expect(roomy.message).toMatch(/^agent-a cannot start: "x+…x+: the reason"; 4 of 5 agents running$/);
  });

  it('reads the logs of failed agents only: not of running, starting or stopped ones, unless the health check just retried them', () => {
    const states = programs({ a: 'RUNNING', b: 'STARTING', c: 'STOPPED', d: 'BACKOFF', e: 'EXITED', f: 'FATAL', g: 'STARTING' });
    expect(programsToExplain(['a', 'b', 'c', 'd', 'e', 'f', 'g'], states)).toEqual(['d', 'e']);
    expect(programsToExplain(['a', 'b', 'g'], states, ['g'])).toEqual(['g']);
    // No more than the status names, however many the health check retried.
    const many = programs(Object.fromEntries(['p', 'q', 'r', 's', 't'].map((n) => [n, 'STARTING'])));
    expect(programsToExplain(['p', 'q', 'r', 's', 't'], many, ['p', 'q', 'r', 's', 't'])).toEqual(['p', 'q', 'r']);
  });

  it('says agents are starting without waiting for them; a retried one is named with the error of its last try', () => {
    expect(unitStatus(config, applied(['a', 'b']), programs({ a: 'STARTING', b: 'STARTING' }))).toEqual(new WaitingStatus('2 agents starting'));
    expect(unitStatus(config, applied(['a', 'b']), programs({ a: 'RUNNING', b: 'STARTING' }))).toEqual(new WaitingStatus('1 agents running, 1 starting'));
    expect(unitStatus(config, applied(['a', 'b']), programs({ a: 'RUNNING', b: 'STARTING' }), { startErrors: new Map([['b', 'no conf']]), retried: ['b'] })).toEqual(new BlockedStatus('b cannot start (retrying): "no conf"; 1 of 2 agents running'));
  });
});

describe('the charm, at the end of a hook', () => {
  it('reads supervisord once and says agents are starting, without waiting for them to run', async () => {
    const { ctx, supervisor } = charmHarness();
    const lab = { 'config-repo': labRepo('agent-1', 'agent-2').url, 'config-dir': 'lab1' };
    await ctx.run(ctx.on.configChanged(), { config: lab });
    // As supervisord has them for startsecs after it spawned them.
    for (const name of ['agent-1', 'agent-2']) supervisor.states.set(name, 'STARTING');
    const reads = jest.spyOn(supervisor, 'readPrograms');
    const started = Date.now();
    const out = await ctx.run(ctx.on.configChanged(), { config: lab });
    expect(out.unitStatus).toEqual(new WaitingStatus('2 agents starting'));
    expect(reads).toHaveBeenCalledTimes(1);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('after adding every agent (a fresh unit) says they are starting without asking supervisord again', async () => {
    const { ctx, supervisor } = charmHarness();
    const reads = jest.spyOn(supervisor, 'readPrograms');
    const out = await ctx.run(ctx.on.configChanged(), { config: { 'config-repo': labRepo('agent-1', 'agent-2').url, 'config-dir': 'lab1' } });
    expect(out.unitStatus).toEqual(new WaitingStatus('2 agents starting'));
    // Once, before the plan (does supervisord run?); none at the end, which would wait for it to fork them all.
    expect(reads).toHaveBeenCalledTimes(1);
  });
});
