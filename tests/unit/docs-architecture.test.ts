/** docs/architecture.md keeps up with src/: every folder has its room, every file it names exists. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../helpers/tmp';

const doc = fs.readFileSync(path.join(repoRoot, 'docs/architecture.md'), 'utf8');

/** Every file under src/, relative to the repository. */
function sourceFiles(dir = 'src'): string[] {
  return fs.readdirSync(path.join(repoRoot, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(`${dir}/${e.name}`) : [`${dir}/${e.name}`]));
}

/** The text of one `## ` section, up to the next. */
function section(title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`docs/architecture.md has no section "${title}"`);
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

/** What the page puts in backticks. */
const quoted = [...doc.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string);

describe('docs/architecture.md', () => {
  it('gives every folder of src/ its row in "The rooms"', () => {
    const folders = fs.readdirSync(path.join(repoRoot, 'src'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `src/${e.name}/`);
    const rows = [...section('The rooms').matchAll(/^\|[^|\n]*\| `(src\/[^`]+\/)` \|/gm)].map((m) => m[1]);
    expect(folders.filter((f) => !rows.includes(f))).toEqual([]);
    expect(rows.filter((r) => !folders.includes(r as string))).toEqual([]);
  });

  it('names only files and folders that exist: paths under src/, tests/, scripts/ and bench/, and bare modules', () => {
    const paths = quoted.filter((q) => /^(src|tests|scripts|bench)\/[\w./-]*$/.test(q));
    const modules = quoted.filter((q) => /^[\w-]+\.ts$/.test(q));
    expect(paths.length).toBeGreaterThan(5);
    expect(modules.length).toBeGreaterThan(5);
    const files = sourceFiles();
    expect(paths.filter((p) => !fs.existsSync(path.join(repoRoot, p)))).toEqual([]);
    expect(modules.filter((m) => !files.some((f) => f.endsWith(`/${m}`)))).toEqual([]);
  });
});
