/**
 * openRegularFile, the one way the agent, the connector and the charm open a file in a directory
 * someone else can write (a job's run dir, /tmp): a link is not followed, a FIFO not waited on,
 * a directory not taken for a file; each is refused at once, and nothing is written through it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NotRegularFile, openRegularFile, readFileNoFollow } from '../../src/common/fsutil';
import { startSerialLog } from '../../src/connector/serial';
import { tempDir } from '../helpers/tmp';

const { O_WRONLY, O_APPEND, O_CREAT, O_RDONLY } = fs.constants;

function runDirWith(): { dir: string; target: string } {
  const dir = tempDir('regular');
  const target = path.join(dir, 'target');
  fs.writeFileSync(target, 'before\n');
  fs.symlinkSync(target, path.join(dir, 'link'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  fs.mkdirSync(path.join(dir, 'subdir'));
  return { dir, target };
}

it('opens a regular file, and creates one where nothing is', () => {
  const { dir, target } = runDirWith();
  const { fd, stat } = openRegularFile(target, O_RDONLY);
  fs.closeSync(fd);
  expect(stat.isFile()).toBe(true);
  fs.closeSync(openRegularFile(path.join(dir, 'new'), O_WRONLY | O_CREAT, 0o600).fd);
  expect(fs.statSync(path.join(dir, 'new')).isFile()).toBe(true);
});

it.each([
  ['a link', 'link', 'ELOOP'],
  ['a FIFO without a reader', 'fifo', 'ENXIO'],
  ['a directory', 'subdir', 'EISDIR'],
])('refuses %s at once, naming the errno as open gave it', (_what, name, code) => {
  const { dir, target } = runDirWith();
  const attempt = () => openRegularFile(path.join(dir, name), O_WRONLY | O_APPEND | O_CREAT);
  expect(attempt).toThrow(NotRegularFile);
  expect(attempt).toThrow(`${path.join(dir, name)}: not a regular file (${code})`);
  expect(fs.readFileSync(target, 'utf8')).toBe('before\n');
});

it('refuses a FIFO opened for reading (no error from open: the descriptor says what it is)', () => {
  const { dir } = runDirWith();
  expect(() => readFileNoFollow(path.join(dir, 'fifo'), 1024)).toThrow(`${path.join(dir, 'fifo')}: not a regular file`);
});

it("the connector's serial log refuses a link or a FIFO at <phase>-serial.log instead of writing through it or hanging", () => {
  const { dir, target } = runDirWith();
  fs.symlinkSync(target, path.join(dir, 'provision-serial.log'));
  expect(() => startSerialLog(() => undefined, dir, 'provision', '127.0.0.1', 9)).toThrow(NotRegularFile);
  execFileSync('mkfifo', [path.join(dir, 'cleanup-serial.log')]);
  expect(() => startSerialLog(() => undefined, dir, 'cleanup', '127.0.0.1', 9)).toThrow(NotRegularFile);
  expect(fs.readFileSync(target, 'utf8')).toBe('before\n');
});
