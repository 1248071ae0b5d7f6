/**
 * Each agent's directory in the config checkout (its default.yaml holds device credentials) is
 * readable by root and that agent's user only, across checkout switches; the checkouts' store
 * lets in the agents' group alone. Real git, real ownership and modes, real reads as other users (root needed).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { giveAgentDir, restrictCheckouts, syncConfigRepo } from '../../src/charm/configrepo';
import { ConfigRepo } from '../helpers/gitrepo';
import { tempDir } from '../helpers/tmp';

/** Ids of their own: agent A's user and group, B's, and the agents' shared group. */
const A = 62001;
const B = 62002;
const AGENTS_GID = 62000;
const GIT_ENV = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };

/** Whether `uid` (its own group and the agents' group, as an agent runs) can read `file`. */
function canRead(uid: number, file: string, groups = [AGENTS_GID]): boolean {
  const run = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, `--groups=${groups.join(',')}`, '--', 'cat', file], { encoding: 'utf8' });
  return run.status === 0;
}

function access(p: string): { uid: number; gid: number; mode: number } {
  const stat = fs.lstatSync(p);
  return { uid: stat.uid, gid: stat.gid, mode: stat.mode & 0o7777 };
}

const itAsRoot = process.getuid?.() === 0 ? it : it.skip;

describe("an agent's config directory is its own", () => {
  itAsRoot('new: root alone; given: root and its agent; kept across a switch; new agents root-only; the store shut to non-agents', async () => {
    const repo = new ConfigRepo('lab1');
    repo.addAgent('agent-a').addAgent('agent-b').commit('two agents');
    const host = tempDir('configs');
    fs.chmodSync(host, 0o755);
    const link = path.join(host, 'agent-configs');
    const source = { remote: { url: repo.url, display: repo.url }, branch: 'main', requiredDir: 'lab1' } as Parameters<typeof syncConfigRepo>[1];
    restrictCheckouts(link, AGENTS_GID);
    await syncConfigRepo(link, source, GIT_ENV);
    const dirOf = (agent: string) => path.join(link, 'lab1', agent);
    const yamlOf = (agent: string) => path.join(dirOf(agent), 'default.yaml');
    // Fresh: no agent's user yet, so root's alone.
    expect(access(dirOf('agent-a')).mode).toBe(0o700);
    expect(canRead(A, yamlOf('agent-a'))).toBe(false);

    giveAgentDir(dirOf('agent-a'), A);
    giveAgentDir(dirOf('agent-b'), B);
    expect(access(dirOf('agent-a'))).toEqual({ uid: 0, gid: A, mode: 0o750 });
    expect(canRead(A, yamlOf('agent-a'))).toBe(true);
    expect(canRead(B, yamlOf('agent-a'))).toBe(false);
    expect(canRead(B, yamlOf('agent-b'))).toBe(true);

    // A new revision is switched in: the agents keep their access at once, a new agent has none yet.
    repo.addAgent('agent-c').writeFile('lab1/agent-a/default.yaml', 'device_ip: 10.0.0.1\n').commit('a third');
    await syncConfigRepo(link, source, GIT_ENV);
    expect(fs.readFileSync(yamlOf('agent-a'), 'utf8')).toContain('10.0.0.1');
    expect(access(dirOf('agent-a'))).toEqual({ uid: 0, gid: A, mode: 0o750 });
    expect(canRead(A, yamlOf('agent-a'))).toBe(true);
    expect(canRead(B, yamlOf('agent-a'))).toBe(false);
    expect(access(dirOf('agent-c')).mode).toBe(0o700);
    expect(canRead(A, yamlOf('agent-c'))).toBe(false);

    // A local user outside the agents' group reaches no checkout at all.
    expect(access(`${link}.d`)).toEqual({ uid: 0, gid: AGENTS_GID, mode: 0o750 });
    expect(canRead(A, path.join(link, 'lab1', 'agent-a', 'default.yaml'), [A])).toBe(false);
  });
});
