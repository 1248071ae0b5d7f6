/** The agent's log: stdout (supervisord keeps it) and a daily-rotated file under logging_basedir. */
import * as fs from 'node:fs';
import * as path from 'node:path';

const LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 } as const;
type Level = keyof typeof LEVELS;
/** Rotated files kept, as upstream keeps them. */
const KEPT_FILES = 6;

/** Control characters (newlines included) in a message are shown escaped: one message, one line. */
export function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex
  return message.replace(/[\u0000-\u001f\u007f]/g, (c) => ({ '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
}

export class AgentLogger implements Logger {
  private readonly threshold: number;
  private day = '';
  constructor(
    private readonly name: string,
    level: string,
    private readonly file: string | undefined,
    private readonly quiet: boolean,
  ) {
    this.threshold = LEVELS[(level.toUpperCase() as Level) in LEVELS ? (level.toUpperCase() as Level) : 'INFO'];
    if (file) fs.mkdirSync(path.dirname(file), { recursive: true });
  }
  debug(m: string) {
    this.write('DEBUG', m);
  }
  info(m: string) {
    this.write('INFO', m);
  }
  warning(m: string) {
    this.write('WARNING', m);
  }
  error(m: string) {
    this.write('ERROR', m);
  }
  private write(level: Level, message: string): void {
    if (LEVELS[level] < this.threshold) return;
    const now = new Date().toISOString();
    const line = `${now} ${oneLine(this.name)} ${level} ${oneLine(message)}\n`;
    if (!this.quiet) process.stdout.write(line);
    if (!this.file) return;
    try {
      this.rotate(now.slice(0, 10));
      fs.appendFileSync(this.file, line);
    } catch {
      // A full or missing log disk must not stop jobs; stdout still has the line.
    }
  }
  private rotate(day: string): void {
    if (!this.file || day === this.day) return;
    const previous = this.day;
    this.day = day;
    if (!previous || !fs.existsSync(this.file)) return;
    for (let i = KEPT_FILES - 1; i >= 1; i--) {
      const from = `${this.file}.${i}`;
      if (fs.existsSync(from)) fs.renameSync(from, `${this.file}.${i + 1}`);
    }
    fs.renameSync(this.file, `${this.file}.1`);
    fs.rmSync(`${this.file}.${KEPT_FILES + 1}`, { force: true });
  }
}

export const silentLogger: Logger = { debug() {}, info() {}, warning() {}, error() {} };
