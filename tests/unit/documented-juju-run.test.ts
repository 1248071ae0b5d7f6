/**
 * Every `juju run` command README.md and actions.yaml show works as typed: the shell's words,
 * read as Juju's client reads them (values are YAML unless --string-args), give an action whose
 * params actions.yaml and the charm accept. And how Juju reads those words, which the check rests on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { JujuRunError, parseJujuRunArgs, type Output } from '../../src/ops/testing';
import { charmHarness, labRepo, type CharmHarness } from '../helpers/charm';
import { shellWords } from '../helpers/shellwords';
import { repoRoot } from '../helpers/tmp';

jest.setTimeout(60_000);

/**
 * Every `juju run <unit>/<n> ...` up to the end of its line or code span, without its trailing
 * comment; `juju run ...` and `<unit>` placeholders are prose.
 */
function documentedCommands(file: string): string[] {
  const text = fs.readFileSync(path.join(repoRoot, file), 'utf8');
  return [...text.matchAll(/juju run [^\s`]+\/[^\n`]*/g)].map((m) => m[0].replace(/\s+#.*$/, '').trim()).filter((c) => !c.includes('...') && !c.includes('<'));
}

/** The outcome of one command on a charm with the agents the examples name (busy, idle). */
async function runDocumented(harness: CharmHarness, command: string): Promise<Output> {
  const argv = shellWords(command).slice(2);
  const out = await harness.ctx.run(harness.ctx.on.jujuRun(argv), { config: lab.config });
  if (out.actionFailure?.startsWith('invalid parameters')) throw new Error(`${command}: the charm refused its params: ${out.actionFailure}`);
  return out;
}

let lab: { config: Record<string, unknown> };
beforeAll(() => {
  lab = { config: { 'config-repo': labRepo('busy', 'idle').url, 'config-dir': 'lab1' } };
});

describe('how juju run reads key=value words', () => {
  const run = (...words: string[]) => parseJujuRunArgs(words).params;

  it('reads values as YAML: a colon and space makes a map, yes and numbers are not strings, * is an alias', () => {
    expect(run('u/0', 'set-offline', 'reason=repair: serial cable')).toEqual({ reason: { repair: 'serial cable' } });
    expect(run('u/0', 'a', 'b=yes', 'c=2024.10', 'd=0755', 'e=lab-*', 'f=busy,idle', 'g=', 'h=2024-10-01')).toEqual({ b: true, c: 2024.1, d: 493, e: 'lab-*', f: 'busy,idle', g: '', h: '2024-10-01' });
    expect(() => run('u/0', 'set-offline', 'agents=*')).toThrow(JujuRunError);
    expect(() => run('u/0', 'set-offline', 'agents=*-1')).toThrow(/not YAML/);
  });

  it('keeps every value a string with --string-args, wherever it stands', () => {
    expect(parseJujuRunArgs(['u/0', 'set-offline', '--string-args', 'agents=*', 'reason=repair: serial cable']).params).toEqual({ agents: '*', reason: 'repair: serial cable' });
    expect(parseJujuRunArgs(['--string-args', 'u/0', 'a', 'n=1']).params).toEqual({ n: '1' });
  });

  it('nests dotted keys, and refuses words and keys Juju refuses', () => {
    expect(run('u/leader', 'a', 'file.kind=xz', 'file.quality=high')).toEqual({ file: { kind: 'xz', quality: 'high' } });
    expect(() => run('u/0', 'a', 'novalue')).toThrow(/key.key.key...=value/);
    expect(() => run('u/0', 'a', 'Bad_Key=1')).toThrow(/lowercase alphanumeric/);
    expect(() => run('a')).toThrow(/no unit specified/);
    expect(() => run('u/0', 'v/1', 'a')).toThrow(/same application/);
    expect(() => parseJujuRunArgs(['u/0', 'a', '--nope'])).toThrow(/not defined/);
  });
});

describe('the documented juju run commands', () => {
  const commands = [...documentedCommands('README.md'), ...documentedCommands('actions.yaml')];

  it('are found: the README shows every action, and actions.yaml the ones whose values YAML would misread', () => {
    const actions = new Set(commands.map((c) => parseJujuRunArgs(shellWords(c).slice(2)).action));
    expect([...actions].sort()).toEqual(['agent-logs', 'agent-status', 'check-drift', 'restart-agents', 'set-offline', 'set-online', 'update-configs', 'update-testflinger']);
    expect(documentedCommands('actions.yaml').length).toBeGreaterThan(0);
  });

  it.each(commands)('%s: its params are accepted', async (command) => {
    const harness = charmHarness();
    await harness.ctx.run(harness.ctx.on.configChanged(), { config: lab.config });
    await runDocumented(harness, command);
  });

  it('a command whose value YAML misreads fails this check, as it fails on Juju', async () => {
    const harness = charmHarness();
    await harness.ctx.run(harness.ctx.on.configChanged(), { config: lab.config });
    await expect(runDocumented(harness, 'juju run testflinger-agent-host/0 set-offline reason="repair: serial cable"')).rejects.toThrow(/set-offline.*param "reason" is a string/);
    await expect(runDocumented(harness, 'juju run testflinger-agent-host/0 set-offline agents=* reason=repair')).rejects.toThrow(JujuRunError);
    await expect(runDocumented(harness, 'juju run testflinger-agent-host/0 restart-agents mode=later')).rejects.toThrow(/refused its params: invalid parameters for restart-agents: mode/);
  });
});
