/** What an operator sees (cos/): the dashboard and the rules use only series the agent exports, and the rules fire as meant. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { EXPORTED_SERIES } from '../../src/agent/metrics';
import { repoRoot } from '../helpers/tmp';

const cos = (...parts: string[]) => path.join(repoRoot, 'cos', ...parts);
const dashboard = JSON.parse(fs.readFileSync(cos('dashboards', 'testflinger-agents.json'), 'utf8')) as { panels: Panel[] };
interface Panel {
  title: string;
  type: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { refId: string; expr: string }[];
}
const alertExprs = (file: string) =>
  (parseYaml(fs.readFileSync(file, 'utf8')) as { groups: { rules: { expr: string }[] }[] }).groups.flatMap((g) => g.rules.map((r) => r.expr));

/** The series a PromQL expression selects: names left once strings, matchers, ranges, clauses and calls are removed. */
function seriesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'group_left', 'group_right']);
  return [...bare.matchAll(/(?<![a-zA-Z0-9_:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![a-zA-Z0-9_:]|\s*\()/g)].map((m) => m[0]).filter((name) => !keywords.has(name) && !/^\d/.test(name));
}

const KNOWN = new Set<string>([...EXPORTED_SERIES, 'phase_duration_seconds_bucket', 'phase_duration_seconds_sum', 'phase_duration_seconds_count', 'up']);

/** The table docs/observability.md shows, rendered from the dashboard. */
function panelTable(): string {
  const rows = dashboard.panels.map((p) => `| ${p.title} | ${p.type} | ${p.targets.map((t) => `\`${t.expr.replace(/\|/g, '\\|')}\``).join('<br>')} |`);
  return ['| panel | kind | query |', '|---|---|---|', ...rows].join('\n');
}

describe('the dashboard', () => {
  it('has the panels an operator needs, each with a query', () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const wanted of [/by state/, /Jobs per hour/, /Failures.*phase/, /Phase duration/, /stale/, /outbox/]) expect(titles.some((t) => wanted.test(t))).toBe(true);
    for (const panel of dashboard.panels) {
      expect(['timeseries', 'stat', 'table', 'heatmap']).toContain(panel.type);
      expect(panel.targets.length).toBeGreaterThan(0);
      expect(panel.gridPos.w).toBeGreaterThan(0);
    }
    expect(dashboard.panels.find((p) => p.type === 'heatmap')?.targets[0]?.expr).toMatch(/phase_duration_seconds_bucket/);
  });

  it.each(dashboard.panels.map((p) => [p.title, p.targets.map((t) => t.expr)] as const))('"%s" queries only series the agent exports', (_title, exprs) => {
    for (const expr of exprs) {
      expect(seriesIn(expr).length).toBeGreaterThan(0);
      expect(seriesIn(expr).filter((s) => !KNOWN.has(s))).toEqual([]);
    }
  });

  it('is summarised, panel by panel, in docs/observability.md', () => {
    expect(fs.readFileSync(path.join(repoRoot, 'docs', 'observability.md'), 'utf8')).toContain(panelTable());
  });
});

describe('the alert rules', () => {
  const rules = cos('prometheus_alert_rules', 'testflinger-agents.rules');

  it('pass promtool check rules', () => {
    expect(execFileSync('promtool', ['check', 'rules', rules], { encoding: 'utf8', timeout: 20_000 })).toMatch(/SUCCESS: 6 rules found/);
  });

  it('select only series the agent exports', () => {
    for (const expr of alertExprs(rules)) expect(seriesIn(expr).filter((s) => !KNOWN.has(s))).toEqual([]);
  });

  it('fire on synthetic series as cos/tests says: agent down, stale poll, results stuck', () => {
    const out = execFileSync('promtool', ['test', 'rules', cos('tests', 'testflinger-agents.test.yaml')], { encoding: 'utf8', timeout: 30_000 });
    expect(out).toMatch(/SUCCESS/);
  });
});

describe('the selector check itself', () => {
  it('finds series and ignores functions, labels and strings', () => {
    expect(seriesIn('sum by (agent_id) (increase(jobs_total{a="up"}[1h])) and on (agent_id) up')).toEqual(['jobs_total', 'up']);
    expect(seriesIn('rate(nonsense_total[5m])')).toEqual(['nonsense_total']);
  });
});
