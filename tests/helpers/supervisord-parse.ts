/** supervisord's own reading of program files: the parser of the installed supervisor package. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, tempDir } from './tmp';

export interface ParsedProgram {
  name: string;
  command: string;
  environment: Record<string, string>;
  uid: number | null;
}

/** Parses the given program files as supervisord would include them from its conf.d. */
export function parseWithSupervisord(programFiles: Record<string, string>): ParsedProgram[] {
  const dir = tempDir('svparse');
  const confD = path.join(dir, 'conf.d');
  fs.mkdirSync(confD);
  for (const [name, content] of Object.entries(programFiles)) fs.writeFileSync(path.join(confD, `${name}.conf`), content);
  const conf = path.join(dir, 'supervisord.conf');
  fs.writeFileSync(conf, `[supervisord]\nlogfile=${dir}/log\npidfile=${dir}/pid\n[include]\nfiles = ${confD}/*.conf\n`);
  const out = execFileSync('/usr/bin/python3', [path.join(repoRoot, 'tests/fixtures/supervisord-parse.py'), conf], { encoding: 'utf8' });
  return JSON.parse(out) as ParsedProgram[];
}
