/**
 * What keeps an idle agent small: its lock name is hashed without loading OpenSSL (and is the
 * same name node:crypto gives, so runtime versions agree on it), its malloc settings stay its
 * own, and it runs a last-resort collection once start-up is done and now and then after.
 */
import { createHash } from 'node:crypto';
import { lockName } from '../../src/agent/lock';
import { AGENT_MALLOC_ENV, FIRST_REDUCTION_MS, REDUCTION_EVERY_MS, jobEnv, scheduleMemoryReduction } from '../../src/agent/memory';
import { sha256Hex } from '../../src/agent/sha256';

describe('sha256Hex', () => {
  it.each([
    ['the empty string', ''],
    ['FIPS 180-4 "abc"', 'abc'],
    ['55 bytes: the longest one-block message', 'a'.repeat(55)],
    ['56 bytes: the length spills into a second block', 'a'.repeat(56)],
    ['64 bytes: exactly one block of message', 'b'.repeat(64)],
    ['several blocks of multi-byte UTF-8', 'agent-é/µ/✓\0'.repeat(40)],
  ])('gives what node:crypto gives for %s', (_what, text) => {
    expect(sha256Hex(text)).toBe(createHash('sha256').update(text).digest('hex'));
  });

  it('names the lock file by the digest node:crypto gives, so every runtime finds the same one', () => {
    const digest = createHash('sha256').update('lab-1').digest('hex').slice(0, 16);
    expect(lockName('lab-1')).toBe(`.testflinger-agent-lock-${digest}`);
  });
});

it("leaves the agent's own malloc settings out of its jobs' environment, and nothing else", () => {
  const env = { PATH: '/usr/bin', MALLOC_PERTURB_: '1', ...AGENT_MALLOC_ENV, UNSET: undefined };
  expect(jobEnv(env)).toEqual({ PATH: '/usr/bin', MALLOC_PERTURB_: '1' });
});

describe('scheduleMemoryReduction', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('runs a last-resort collection once start-up is over, then again every so often, until stopped', () => {
    const gc = jest.fn();
    const reduction = scheduleMemoryReduction(gc);
    jest.advanceTimersByTime(FIRST_REDUCTION_MS - 1);
    expect(gc).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1);
    expect(gc.mock.calls).toEqual([[{ type: 'major', execution: 'sync', flavor: 'last-resort' }]]);
    jest.advanceTimersByTime(REDUCTION_EVERY_MS);
    expect(gc).toHaveBeenCalledTimes(2);
    reduction.stop();
    jest.advanceTimersByTime(10 * REDUCTION_EVERY_MS);
    expect(gc).toHaveBeenCalledTimes(2);
  });

  it('schedules nothing when node runs without --expose-gc', () => {
    scheduleMemoryReduction(undefined).stop();
    expect(jest.getTimerCount()).toBe(0);
  });
});
