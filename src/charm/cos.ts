/**
 * The provider side of the `cos_agent` interface (version 0 of the grafana-agent charm library):
 * what this unit writes to its cos-agent relation so a Grafana Agent on the same machine scrapes
 * every agent, and forwards our alert rules and dashboards.
 *
 * The unit bag holds one key, `config`: a JSON object with the library's fields in its order.
 * Alert rules carry Juju topology (labels, and matchers in every selector of our series);
 * dashboards are LZMA (xz container) compressed, then base64, with the library's uid and tag.
 * Everything here is pure except readCosBundle, which reads the files under cos/.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { EXPORTED_SERIES } from '../agent/metrics';
import { xzStored } from '../common/xz';

/** The key the library nests its unit data under. */
const COS_AGENT_DATA_KEY = 'config';

export interface AgentScrapeTarget {
  /** The supervisor program name (the agent's directory in the config repo). */
  name: string;
  agentId: string;
  port: number;
  queues: readonly string[];
}

export interface JujuTopology {
  model: string;
  modelUuid: string;
  application: string;
  charmName: string;
}

export interface ScrapeJob {
  job_name: string;
  metrics_path: string;
  static_configs: { targets: string[]; labels: Record<string, string> }[];
}

export interface RuleGroup {
  name: string;
  rules: Record<string, unknown>[];
}
export interface RuleFile {
  groups: RuleGroup[];
}

/** The library's CosAgentProviderUnitData, field for field. */
export interface CosAgentProviderUnitData {
  metrics_alert_rules: RuleFile;
  log_alert_rules: RuleFile;
  dashboards: string[];
  subordinate: boolean | null;
  metrics_scrape_jobs: ScrapeJob[];
  log_slots: string[];
  tracing_protocols: string[] | null;
}

// ---- scrape jobs ----

/** Queues as one label value with a comma at each end, so `queues=~".*,lab-q,.*"` finds one queue. */
function queuesLabel(queues: readonly string[]): string {
  return queues.length === 0 ? '' : `,${[...queues].sort().join(',')},`;
}

function shortHash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 8);
}

/**
 * One job per agent, scraped on localhost as the library's metrics endpoints are. The job name
 * has the library's shape, `<app>_<name>_<8 hex of the rest>`. Target labels never repeat a
 * label of the series themselves (agent_id), which Prometheus would rename to exported_*.
 */
export function agentScrapeJobs(agents: readonly AgentScrapeTarget[], unitName: string): ScrapeJob[] {
  const app = unitName.split('/')[0] ?? '';
  return agents
    .map((agent) => {
      const job = {
        metrics_path: '/metrics',
        static_configs: [{ targets: [`localhost:${agent.port}`], labels: { agent: agent.name, unit: unitName, queues: queuesLabel(agent.queues) } }],
      };
      return { job_name: `${app}_${agent.name}_${shortHash(job)}`, ...job };
    })
    .sort((a, b) => a.job_name.localeCompare(b.job_name));
}

// ---- alert rules ----

/** `model_uuid8_app`, as the library names rule groups and files. */
function topologyIdentifier(t: JujuTopology): string {
  return `${t.model}_${t.modelUuid.slice(0, 8)}_${t.application}`;
}

function topologyLabels(t: JujuTopology): Record<string, string> {
  return { juju_model: t.model, juju_model_uuid: t.modelUuid, juju_application: t.application, juju_charm: t.charmName };
}

/** Series our rules may select: ours, their histogram parts, and `up`. */
const SELECTABLE = [...EXPORTED_SERIES, 'phase_duration_seconds_bucket', 'phase_duration_seconds_sum', 'phase_duration_seconds_count', 'up'];
const SELECTOR = new RegExp(`(?<![\\w:"])(${SELECTABLE.sort((a, b) => b.length - a.length).join('|')})(?![\\w:])(\\{)?`, 'g');

/**
 * Adds label matchers to every selector of our series in a PromQL expression (the library has
 * cos-tool do this for any PromQL; our expressions select only our own series, which this
 * handles). Text inside quotes is left alone.
 */
export function injectMatchers(expr: string, matchers: Record<string, string>): string {
  const text = Object.entries(matchers)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',');
  return expr
    .split(/("(?:[^"\\]|\\.)*")/)
    .map((part, i) =>
      i % 2 === 1
        ? part
        : part.replace(SELECTOR, (_m, name: string, brace?: string) => (brace ? `${name}{${text},` : `${name}{${text}}`)),
    )
    .join('')
    .replace(/,\}/g, '}');
}

/** The library's generic group for every application: host down, and metrics missing. */
const HOST_HEALTH: RuleGroup = {
  name: 'HostHealth',
  rules: [
    { alert: 'HostDown', expr: 'up < 1', for: '5m', labels: { severity: 'critical' }, annotations: { summary: "Host '{{ $labels.instance }}' is down." } },
    { alert: 'HostMetricsMissing', expr: 'absent(up)', for: '5m', labels: { severity: 'warning' }, annotations: { summary: "Unit '{{ $labels.juju_unit }}' of application '{{ $labels.juju_application }}' is down or failing to remote write." } },
  ],
};

/**
 * Rules as the library hands them on: group names `<identifier>_<group>_rules`, topology labels
 * on every rule, and matchers on every selector (for LogQL only model and model uuid: logs of a
 * machine are collected under the Grafana Agent's own application, not ours).
 */
export function withTopology(rules: RuleFile, t: JujuTopology, query: 'promql' | 'logql'): RuleFile {
  const labels = topologyLabels(t);
  const matchers: Record<string, string> = { juju_model: t.model, juju_model_uuid: t.modelUuid };
  if (query === 'promql') matchers['juju_application'] = t.application;
  return {
    groups: rules.groups.map((group) => ({
      name: `${topologyIdentifier(t)}_${group.name}${group.name.endsWith('_rules') ? '' : '_rules'}`.replace(/[^a-zA-Z0-9_:]/g, '_'),
      rules: group.rules.map((rule) => ({
        ...rule,
        labels: { ...labels, ...(rule['labels'] as Record<string, string> | undefined) },
        expr: query === 'promql' ? injectMatchers(String(rule['expr']), matchers) : injectLogMatchers(String(rule['expr']), matchers),
      })),
    })),
  };
}

/** LogQL stream selectors start the expression's braces: `{job="varlog"}` gains the matchers. */
function injectLogMatchers(expr: string, matchers: Record<string, string>): string {
  const text = Object.entries(matchers)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',');
  return expr.replace(/\{(?=\s*\w+\s*(=|!=|=~|!~)\s*")/g, `{${text},`);
}

// ---- dashboards ----

/** The library's dashboard uid: 40 hex digits of SHAKE-256 over `<charm>-<path in the charm>`. */
export function dashboardUid(charmName: string, relativePath: string): string {
  return createHash('shake256', { outputLength: 20 }).update(`${charmName}-${relativePath}`).digest('hex');
}

/** A dashboard as the library sends it: its uid and a `charm: <name>` tag set, then LZMA and base64. */
function encodeDashboard(dashboard: Record<string, unknown>, charmName: string, relativePath: string): string {
  const tags = Array.isArray(dashboard['tags']) ? (dashboard['tags'] as string[]) : [];
  const tagged = { ...dashboard, uid: dashboardUid(charmName, relativePath), tags: tags.some((t) => t.startsWith('charm: ')) ? tags : [...tags, `charm: ${charmName}`] };
  return xzStored(Buffer.from(JSON.stringify(tagged), 'utf8')).toString('base64');
}

// ---- the unit bag ----

export interface CosBundle {
  metricsAlertRules: RuleFile;
  logAlertRules: RuleFile;
  /** Dashboards with their path in the charm (it gives the uid). */
  dashboards: { relativePath: string; dashboard: Record<string, unknown> }[];
}

export function providerUnitData(input: { agents: readonly AgentScrapeTarget[]; unitName: string; topology: JujuTopology; bundle: CosBundle }): CosAgentProviderUnitData {
  const { topology, bundle } = input;
  const metricsRules = { groups: [...bundle.metricsAlertRules.groups, HOST_HEALTH] };
  return {
    metrics_alert_rules: withTopology(metricsRules, topology, 'promql'),
    log_alert_rules: withTopology(bundle.logAlertRules, topology, 'logql'),
    dashboards: bundle.dashboards.map((d) => encodeDashboard(d.dashboard, topology.charmName, d.relativePath)),
    subordinate: null,
    metrics_scrape_jobs: agentScrapeJobs(input.agents, input.unitName),
    // Agent logs are files under /var/log/supervisor, which the Grafana Agent machine charm
    // collects itself (its /var/log/**/*log job); log slots are for snaps.
    log_slots: [],
    tracing_protocols: null,
  };
}

/** What relation-set writes: the whole model as JSON under the library's key. */
export function providerUnitBag(data: CosAgentProviderUnitData): Record<string, string> {
  return { [COS_AGENT_DATA_KEY]: JSON.stringify(data) };
}

/** Reads cos/: prometheus_alert_rules/*.rules, loki_alert_rules/*.rules, dashboards/*.json. */
export function readCosBundle(charmDir: string): CosBundle {
  const files = (dir: string, ext: string) => {
    const full = path.join(charmDir, 'cos', dir);
    return fs.existsSync(full) ? fs.readdirSync(full).filter((f) => f.endsWith(ext)).sort().map((f) => path.join('cos', dir, f)) : [];
  };
  const groupsOf = (dir: string): RuleFile => ({
    groups: files(dir, '.rules').flatMap((f) => (parseYaml(fs.readFileSync(path.join(charmDir, f), 'utf8')) as RuleFile).groups),
  });
  return {
    metricsAlertRules: groupsOf('prometheus_alert_rules'),
    logAlertRules: groupsOf('loki_alert_rules'),
    dashboards: files('dashboards', '.json').map((relativePath) => ({ relativePath, dashboard: JSON.parse(fs.readFileSync(path.join(charmDir, relativePath), 'utf8')) })),
  };
}
