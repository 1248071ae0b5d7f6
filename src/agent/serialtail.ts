/**
 * The serial console's log of a phase: <phase>-serial.log, written by the connector in the job's
 * run directory, streamed to the serial log endpoint while the phase runs.
 */
import * as fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { LiveLog } from './logstream';
import { openRegularFile } from '../common/fsutil';
import { SecretMasker } from '../common/masker';

/** The serial log is read this much at a time, so a huge file is not read into memory at once. */
const SERIAL_READ_BYTES = 1024 * 1024;
/** Bound of the last catch-up read when a phase ends (the live log keeps only so much anyway). */
const SERIAL_FINAL_READS = 64;

/**
 * Streams `file` to `sink` every `intervalMs` until the returned function is called, which reads
 * what is left (bounded) and ends the stream. Its masker and decoder keep state across reads, so
 * a secret or a character split between two reads is still whole when it is masked.
 */
export function tailSerial(file: string, sink: LiveLog, phase: string, secretValues: readonly string[], intervalMs: number): () => void {
  const masker = new SecretMasker(secretValues);
  const decoder = new StringDecoder('utf8');
  let offset = 0;
  /** Reads one bounded chunk; true when there may be more. */
  const read = (): boolean => {
    let opened: { fd: number; stat: fs.Stats };
    try {
      // Not through a link or a FIFO: the file is the job's, and what it names would go to the server.
      opened = openRegularFile(file, fs.constants.O_RDONLY);
    } catch {
      return false; // not there (yet), or not a regular file
    }
    const { fd, stat } = opened;
    try {
      if (stat.size <= offset) return false;
      const buffer = Buffer.alloc(Math.min(stat.size - offset, SERIAL_READ_BYTES));
      const got = fs.readSync(fd, buffer, 0, buffer.length, offset);
      offset += got;
      sink.write(phase, masker.push(decoder.write(buffer.subarray(0, got))));
      return got > 0 && offset < stat.size;
    } catch {
      return false;
    } finally {
      fs.closeSync(fd);
    }
  };
  const timer = setInterval(read, intervalMs);
  return () => {
    clearInterval(timer);
    for (let chunk = 0; chunk < SERIAL_FINAL_READS && read(); chunk++);
    sink.write(phase, masker.push(decoder.end()) + masker.end());
  };
}
