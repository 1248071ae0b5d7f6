/**
 * The agent's side of multi's credentials (src/agent/tokenfeed.ts): which phases get the token,
 * and what goes down the pipe: the token at once, a renewed one when the agent's changes, nothing
 * twice, and an immediate end when the agent has no token at all.
 */
import { PassThrough } from 'node:stream';
import { feedAccessToken, phaseGetsServerToken } from '../../src/agent/tokenfeed';

function pipe(): { stream: PassThrough; text: () => string; ended: () => boolean } {
  const stream = new PassThrough();
  let text = '';
  let ended = false;
  stream.on('data', (d: Buffer) => (text += d.toString()));
  stream.on('end', () => (ended = true));
  return { stream, text: () => text, ended: () => ended };
}

const tick = () => new Promise((r) => setTimeout(r, 30));

it("only a multi agent's provision and cleanup phases get the token", () => {
  const phases = ['setup', 'provision', 'firmware_update', 'test', 'allocate', 'reserve', 'cleanup'] as const;
  expect(phases.filter((phase) => phaseGetsServerToken('multi', phase))).toEqual(['provision', 'cleanup']);
  expect(phases.filter((phase) => phaseGetsServerToken('fake', phase) || phaseGetsServerToken(undefined, phase))).toEqual([]);
});

it('feeds the current token, then each renewal once, and closes the pipe when stopped', async () => {
  const tokens = ['tok-1', 'tok-1', 'tok-2'];
  const p = pipe();
  const stop = feedAccessToken(p.stream, async () => tokens.shift() ?? 'tok-2', () => undefined, 5);
  await tick();
  stop();
  await tick();
  expect(p.text()).toBe('tok-1\ntok-2\n');
  expect(p.ended()).toBe(true);
});

it('without a token, ends the pipe at once; a failed refresh is retried, not taken for "no token"', async () => {
  const none = pipe();
  feedAccessToken(none.stream, async () => undefined, () => undefined, 5);
  await tick();
  expect(none.ended()).toBe(true);
  expect(none.text()).toBe('');

  let calls = 0;
  const errors: string[] = [];
  const flaky = pipe();
  const stop = feedAccessToken(flaky.stream, async () => (++calls === 1 ? Promise.reject(new Error('server down')) : 'tok-1'), (e) => errors.push(e.message), 5);
  await tick();
  stop();
  await tick();
  expect(errors).toEqual(['server down']);
  expect(flaky.text()).toBe('tok-1\n');
});
