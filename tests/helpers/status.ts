/** Status expectations several suites share. */

/**
 * The status a hook that (re)started `count` agents leaves: it reads supervisord once, without
 * waiting for their startsecs, so they show as starting (waiting), unless the host was quick
 * enough for some or all of them to be RUNNING already (active once all are).
 */
export function expectStartingOrRunning(status: { status: string; message: string } | null | undefined, count: number, suffix = ''): void {
  const allRunning = `${count} agent${count === 1 ? '' : 's'} running${suffix}`;
  if (status?.status === 'active') {
    expect(status.message).toBe(allRunning);
    return;
  }
  expect(status?.status).toBe('waiting');
  const starting = [`${count} agent${count === 1 ? '' : 's'} starting${suffix}`, ...Array.from({ length: count - 1 }, (_, i) => `${i + 1} agents running, ${count - i - 1} starting${suffix}`)];
  expect(starting).toContain(status?.message);
}
