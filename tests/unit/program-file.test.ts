/** The supervisord program file, as rendered for a real unit and for a sandbox. */
import { sandboxAgentRun, unitAgentRun } from '../../src/charm/driver';
import { hostPaths } from '../../src/charm/paths';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { managedProgramNames, MANAGED_MARKER, renderProgramFile, writeProgramFiles } from '../../src/charm/programfiles';
import { TemplateRenderer } from '../../src/charm/templates';
import { parseWithSupervisord } from '../helpers/supervisord-parse';
import { repoRoot, tempDir } from '../helpers/tmp';

const renderer = new TemplateRenderer(repoRoot);
const spec = { name: 'agent-101', confPath: '/srv/agent-configs/lab1/agent-101/testflinger-agent.conf', agentDir: '/srv/agent-configs/lab1/agent-101', metricsPort: 8201, extraEnv: { TESTFLINGER_SERVER: 'https://tf.example.com:8443/api' } };

describe('program files', () => {
  it('on a real unit (its driver): the wrapper runs the shipped agent as its own user in its own cgroup, restarts it when it exits, marks the file as ours', () => {
    const text = renderProgramFile(renderer, hostPaths('/'), spec, unitAgentRun(hostPaths('/'), 'agent-101', true));
    expect(text.startsWith(MANAGED_MARKER)).toBe(true);
    expect(text).toMatch(/^\[program:agent-101\]$/m);
    expect(text).toMatch(
      /^command=\/srv\/testflinger-agent\/bin\/testflinger-agent-contained tf-agent-101 agent-101 \/srv\/testflinger-agent\/bin\/testflinger-agent -c \/srv\/agent-configs\/lab1\/agent-101\/testflinger-agent.conf -p 8201 --token-file \/var\/lib\/testflinger-agent\/refresh_token$/m,
    );
    // The wrapper (root) becomes the agent's user itself, after it made the agent's cgroup.
    expect(text).not.toMatch(/^user=/m);
    expect(text).toMatch(/^directory=\/var\/lib\/testflinger-agent\/home\/agent-101$/m);
    expect(text).toMatch(/^autorestart=unexpected$/m);
    // An agent that exits at once (a bad conf) ends FATAL after a few tries, not in a loop.
    expect(text).toMatch(/^startsecs=1$/m);
    expect(text).toMatch(/^startretries=3$/m);
    expect(text).toMatch(/HOME="\/var\/lib\/testflinger-agent\/home\/agent-101",USER="tf-agent-101",/);
    expect(text).toMatch(/TESTFLINGER_STATE_DIR="\/srv\/testflinger\/agent-101",TESTFLINGER_TEST_SANDBOX="on",TESTFLINGER_SANDBOX_PROGRAM="\/usr\/lib\/testflinger-agent-host\/bwrap",PATH="\/usr\/local\/bin:\/srv\/testflinger-agent\/bin:/);
    expect(text).toMatch(/TESTFLINGER_OFFLINE_MARKER_DIR="\/tmp"/);
    expect(text).toMatch(/TESTFLINGER_SERVER="https:\/\/tf\.example\.com:8443\/api"/);
    expect(text).not.toMatch(/TESTFLINGER_METRICS_HOST/);
  });

  it('on a unit with test-sandbox=false: the agent is told the sandbox is off', () => {
    const text = renderProgramFile(renderer, hostPaths('/'), spec, unitAgentRun(hostPaths('/'), 'agent-101', false));
    expect(text).toMatch(/TESTFLINGER_TEST_SANDBOX="off"/);
  });

  it('on a unit, supervisord reads the wrapper, the user and the cgroup name as the first words of the command', () => {
    const text = renderProgramFile(renderer, hostPaths('/'), spec, unitAgentRun(hostPaths('/'), 'agent-101', true));
    const [program] = parseWithSupervisord({ 'agent-101': text });
    expect(program?.command.split(' ').slice(0, 4)).toEqual(['/srv/testflinger-agent/bin/testflinger-agent-contained', 'tf-agent-101', 'agent-101', '/srv/testflinger-agent/bin/testflinger-agent']);
    expect(program?.environment).toMatchObject({ USER: 'tf-agent-101', TESTFLINGER_TEST_SANDBOX: 'on' });
    expect(program?.uid).toBeNull();
  });

  it('in a sandbox (its driver): no user= line, metrics on loopback, paths under the root', () => {
    const root = tempDir('prog');
    const text = renderProgramFile(renderer, hostPaths(root), spec, sandboxAgentRun(hostPaths(root)));
    expect(text).not.toMatch(/^user=/m);
    expect(text).toMatch(/TESTFLINGER_METRICS_HOST="127\.0\.0\.1"/);
    expect(text).toMatch(new RegExp(`^command=${root}/srv/testflinger-agent/bin/testflinger-agent `, 'm'));
  });

  it('only files that carry the marker are the charm\'s: others are never removed', () => {
    const paths = hostPaths(tempDir('own'));
    fs.mkdirSync(paths.programDir, { recursive: true });
    fs.writeFileSync(path.join(paths.programDir, 'node-exporter.conf'), '[program:node-exporter]\ncommand=/bin/true\n');
    writeProgramFiles(paths, new Map([['agent-1', `${MANAGED_MARKER}\n[program:agent-1]\n`], ['agent-2', `${MANAGED_MARKER}\n[program:agent-2]\n`]]));
    expect(managedProgramNames(paths).sort()).toEqual(['agent-1', 'agent-2']);
    expect(writeProgramFiles(paths, new Map([['agent-1', `${MANAGED_MARKER}\n[program:agent-1]\n`]]))).toEqual({ written: [], removed: ['agent-2'] });
    expect(fs.readdirSync(paths.programDir).sort()).toEqual(['agent-1.conf', 'node-exporter.conf']);
  });

  it('supervisord itself reads exactly one program with the environment we meant', () => {
    const paths = hostPaths(tempDir('prog'));
    const text = renderProgramFile(renderer, paths, spec, sandboxAgentRun(paths));
    const programs = parseWithSupervisord({ 'agent-101': text });
    expect(programs.map((p) => p.name)).toEqual(['agent-101']);
    expect(programs[0]?.environment).toMatchObject({ TESTFLINGER_SERVER: 'https://tf.example.com:8443/api', TESTFLINGER_AGENT_DIR: spec.agentDir, HOME: paths.homeDir });
  });

  // Each of these once added a second, root program or left a file supervisord could not parse.
  it.each([
    ['a quote and a new section in a value', { extraEnv: { TESTFLINGER_SERVER: 'https://x",X="y\n[program:evil]\ncommand=/bin/sh -c id' } }],
    ['a comma pair in a value', { extraEnv: { TESTFLINGER_SERVER: 'https://x,EVIL=1' } }],
    ['supervisord interpolation', { extraEnv: { TESTFLINGER_SERVER: 'https://x/%(ENV_HOME)s' } }],
    ['a quote in a path', { agentDir: '/srv/agent-configs/la"b1/agent-101' }],
    ['a newline in a path', { confPath: '/srv/agent-configs/lab1\n[program:evil]/testflinger-agent.conf' }],
    ['a name that is not a program name', { name: 'agent:101' }],
  ])('refuses, rather than escapes, %s', (_what, override) => {
    expect(() => renderProgramFile(renderer, hostPaths('/'), { ...spec, ...override }, unitAgentRun(hostPaths('/'), 'agent-101', true))).toThrow(/cannot carry safely|not a safe program name/);
  });
});
