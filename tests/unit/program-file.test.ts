/** The supervisord program file, as rendered for a real unit and for a sandbox. */
import { SANDBOX_RUN_AS, UNIT_RUN_AS } from '../../src/charm/driver';
import { hostPaths } from '../../src/charm/paths';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { managedProgramNames, MANAGED_MARKER, renderProgramFile, writeProgramFiles } from '../../src/charm/supervisor';
import { TemplateRenderer } from '../../src/charm/templates';
import { parseWithSupervisord } from '../helpers/supervisord-parse';
import { repoRoot, tempDir } from '../helpers/tmp';

const renderer = new TemplateRenderer(repoRoot);
const spec = { name: 'agent-101', confPath: '/srv/agent-configs/lab1/agent-101/testflinger-agent.conf', agentDir: '/srv/agent-configs/lab1/agent-101', metricsPort: 8201, extraEnv: { TESTFLINGER_SERVER: 'https://tf.example.com:8443/api' } };

describe('program files', () => {
  it('on a real unit (its driver): runs the shipped agent as ubuntu, restarts it when it exits, marks the file as ours', () => {
    const text = renderProgramFile(renderer, hostPaths('/'), spec, UNIT_RUN_AS);
    expect(text.startsWith(MANAGED_MARKER)).toBe(true);
    expect(text).toMatch(/^\[program:agent-101\]$/m);
    expect(text).toMatch(/^command=\/srv\/testflinger-agent\/bin\/testflinger-agent -c \/srv\/agent-configs\/lab1\/agent-101\/testflinger-agent.conf -p 8201 --token-file \/var\/lib\/testflinger-agent\/refresh_token$/m);
    expect(text).toMatch(/^user=ubuntu$/m);
    expect(text).toMatch(/^autorestart=unexpected$/m);
    // An agent that exits at once (a bad conf) ends FATAL after a few tries, not in a loop.
    expect(text).toMatch(/^startsecs=1$/m);
    expect(text).toMatch(/^startretries=3$/m);
    expect(text).toMatch(/HOME="\/home\/ubuntu",USER="ubuntu",PATH="\/usr\/local\/bin:\/srv\/testflinger-agent\/bin:/);
    expect(text).toMatch(/TESTFLINGER_OFFLINE_MARKER_DIR="\/tmp"/);
    expect(text).toMatch(/TESTFLINGER_SERVER="https:\/\/tf\.example\.com:8443\/api"/);
    expect(text).not.toMatch(/TESTFLINGER_METRICS_HOST/);
  });

  it('in a sandbox (its driver): no user= line, metrics on loopback, paths under the root', () => {
    const root = tempDir('prog');
    const text = renderProgramFile(renderer, hostPaths(root), spec, SANDBOX_RUN_AS);
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
    const text = renderProgramFile(renderer, paths, spec, SANDBOX_RUN_AS);
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
    expect(() => renderProgramFile(renderer, hostPaths('/'), { ...spec, ...override }, UNIT_RUN_AS)).toThrow(/cannot carry safely|not a safe program name/);
  });
});
