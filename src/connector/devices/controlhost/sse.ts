/**
 * Server-sent events, read as upstream's connector reads the control host's log stream: an event
 * ends with a blank line; its `data` lines are joined with newlines; `id` sets the resume cursor,
 * which advances only once its event was handled, so a malformed entry is never skipped on
 * reconnect. Comments (`:`) and other fields (`event`, `retry`) are ignored.
 */

export interface StreamResult {
  /** How many events were handled. */
  emitted: number;
  /** Whether a handled event carried an `id`: then `lastId` is the cursor (null clears it). */
  cursorUpdated: boolean;
  lastId: string | null;
}

/** Splits a byte stream into lines (LF, CRLF or CR), keeping a partial last line until more comes. */
async function* lines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of chunks) {
    pending += decoder.decode(chunk, { stream: true });
    // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
    const complete = /\r$/.test(pending) ? pending.slice(0, -1) : pending;
    const parts = complete.split(/\r\n|\r|\n/);
    const rest = parts.pop() ?? '';
    for (const line of parts) yield line;
    pending = rest + (complete === pending ? '' : '\r');
  }
  // An unterminated last line still counts as a line; an event it starts is never dispatched.
  if (pending !== '') yield pending.replace(/\r$/, '');
}

export function emptyResult(): StreamResult {
  return { emitted: 0, cursorUpdated: false, lastId: null };
}

/**
 * Reads events until the stream ends; `handle` gets each event's data and says whether it was
 * used. Progress goes into `result` as it is made, so it survives a stream that breaks.
 */
export async function readEvents(chunks: AsyncIterable<Uint8Array>, handle: (data: string) => boolean, result: StreamResult = emptyResult()): Promise<StreamResult> {
  let eventId: string | null = null;
  let eventHasId = false;
  let data: string[] = [];
  for await (const line of lines(chunks)) {
    if (line === '') {
      if (data.length > 0 && handle(data.join('\n'))) {
        result.emitted++;
        if (eventHasId) {
          result.lastId = eventId;
          result.cursorUpdated = true;
        }
      }
      eventId = null;
      eventHasId = false;
      data = [];
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const field = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') {
      eventId = value === '' ? null : value;
      eventHasId = true;
    } else if (field === 'data') {
      data.push(value);
    }
  }
  return result;
}
