/** Untrusted text as a message may show it: one line, quoted and escaped (JSON), capped at `max` characters. */
export function quoted(value: unknown, max = 120): string {
  const clip = (text: string) => (text.length > max ? `${text.slice(0, max)}…` : text);
  if (typeof value === 'string') return JSON.stringify(clip(value));
  return clip(JSON.stringify(value) ?? String(value));
}
