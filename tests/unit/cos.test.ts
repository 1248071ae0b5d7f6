/** The cos-agent unit bag, as version 0 of the grafana-agent charm library defines it. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { agentScrapeJobs, dashboardUid, injectMatchers, providerUnitBag, providerUnitData, readCosBundle, withTopology, type JujuTopology } from '../../src/charm/cos';
import { xzStored } from '../../src/common/xz';
import { repoRoot } from '../helpers/tmp';

const topology: JujuTopology = { model: 'lab', modelUuid: '0a1b2c3d-0000-4000-8000-000000000000', application: 'testflinger-agent-host', charmName: 'testflinger-agent-host' };
const agents = [
  { name: 'agent-102', agentId: 'agent-102', port: 8201, queues: ['rpi4', 'arm64'] },
  { name: 'agent101', agentId: 'agent-101', port: 8200, queues: ['x86'] },
];
const unitData = () => providerUnitData({ agents, unitName: 'testflinger-agent-host/0', topology, bundle: readCosBundle(repoRoot) });

/** What the library's requirer does with a dashboard: base64, then lzma.decompress (Python). */
function pythonDecodes(encoded: string): unknown {
  const script = 'import base64,lzma,sys; sys.stdout.write(lzma.decompress(base64.b64decode(sys.stdin.read())).decode())';
  return JSON.parse(execFileSync('python3', ['-c', script], { input: encoded, encoding: 'utf8', timeout: 20_000 }));
}

describe('scrape jobs', () => {
  it('one job per agent on its metrics port, labelled by agent, unit and queues', () => {
    const jobs = agentScrapeJobs(agents, 'testflinger-agent-host/0');
    expect(jobs.map((j) => j.static_configs)).toEqual([
      [{ targets: ['localhost:8201'], labels: { agent: 'agent-102', unit: 'testflinger-agent-host/0', queues: ',arm64,rpi4,' } }],
      [{ targets: ['localhost:8200'], labels: { agent: 'agent101', unit: 'testflinger-agent-host/0', queues: ',x86,' } }],
    ]);
    expect(jobs.map((j) => j.job_name)).toEqual([expect.stringMatching(/^testflinger-agent-host_agent-102_[0-9a-f]{8}$/), expect.stringMatching(/^testflinger-agent-host_agent101_[0-9a-f]{8}$/)]);
    expect(jobs.every((j) => j.metrics_path === '/metrics')).toBe(true);
  });

  it('names a job the same way every time, and differently when its target moves', () => {
    const again = agentScrapeJobs(agents, 'testflinger-agent-host/0');
    expect(again).toEqual(agentScrapeJobs(agents, 'testflinger-agent-host/0'));
    const moved = agentScrapeJobs([{ ...agents[1]!, port: 8300 }], 'testflinger-agent-host/0');
    expect(moved[0]?.job_name).not.toEqual(again[1]?.job_name);
  });
});

describe('the unit bag', () => {
  it('holds the library model as JSON under "config", fields in the library order', () => {
    const bag = providerUnitBag(unitData());
    expect(Object.keys(bag)).toEqual(['config']);
    const model = JSON.parse(bag['config'] as string);
    expect(Object.keys(model)).toEqual(['metrics_alert_rules', 'log_alert_rules', 'dashboards', 'subordinate', 'metrics_scrape_jobs', 'log_slots', 'tracing_protocols']);
    expect(model).toMatchObject({ subordinate: null, log_slots: [], tracing_protocols: null });
    expect(model.metrics_scrape_jobs).toHaveLength(2);
  });

  it('sends dashboards as the library encodes them: xz (LZMA) then base64, with its uid and charm tag', () => {
    const [encoded] = unitData().dashboards;
    const dashboard = pythonDecodes(encoded as string) as { uid: string; tags: string[]; title: string };
    // The library's DashboardPath40UID, computed by Python's hashlib.
    const libraryUid = execFileSync('python3', ['-c', 'import hashlib; print(hashlib.shake_256(b"testflinger-agent-host-cos/dashboards/testflinger-agents.json").hexdigest(20), end="")'], { encoding: 'utf8' });
    expect(dashboard.uid).toBe(libraryUid);
    expect(dashboardUid('testflinger-agent-host', 'cos/dashboards/testflinger-agents.json')).toBe(libraryUid);
    expect(dashboard.tags).toContain('charm: testflinger-agent-host');
    expect(dashboard.title).toBe('Testflinger agents');
  });

  it('writes xz streams that xz itself accepts, empty and over one LZMA2 chunk', () => {
    for (const size of [0, 1, 65_536, 200_001]) {
      const data = Buffer.alloc(size, 'a');
      expect(execFileSync('xz', ['-dc'], { input: xzStored(data), timeout: 20_000 }).equals(data)).toBe(true);
    }
  });
});

describe('alert rules carry Juju topology', () => {
  it('names groups after the topology and labels every rule with it', () => {
    const { groups } = unitData().metrics_alert_rules;
    expect(groups.map((g) => g.name)).toEqual(['lab_0a1b2c3d_testflinger_agent_host_TestflingerAgents_rules', 'lab_0a1b2c3d_testflinger_agent_host_HostHealth_rules']);
    for (const rule of groups.flatMap((g) => g.rules)) {
      expect(rule['labels']).toMatchObject({ juju_model: 'lab', juju_model_uuid: topology.modelUuid, juju_application: 'testflinger-agent-host', juju_charm: 'testflinger-agent-host' });
    }
  });

  it('adds matchers to every selector of our series, and none inside strings', () => {
    const m = { juju_model: 'lab' };
    expect(injectMatchers('up == 0', m)).toBe('up{juju_model="lab"} == 0');
    expect(injectMatchers('rate(failures_total{test_phase="x"}[1h]) / rate(jobs_total[1h])', m)).toBe('rate(failures_total{juju_model="lab",test_phase="x"}[1h]) / rate(jobs_total{juju_model="lab"}[1h])');
    expect(injectMatchers('label_replace(up, "x", "jobs_total", "", "")', m)).toBe('label_replace(up{juju_model="lab"}, "x", "jobs_total", "", "")');
    expect(injectMatchers('sum by (le) (phase_duration_seconds_bucket{})', m)).toBe('sum by (le) (phase_duration_seconds_bucket{juju_model="lab"})');
  });

  it('the rules as sent still pass promtool', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cos-rules-')), 'sent.rules');
    fs.writeFileSync(file, JSON.stringify(unitData().metrics_alert_rules));
    expect(execFileSync('promtool', ['check', 'rules', file], { encoding: 'utf8', timeout: 20_000 })).toMatch(/SUCCESS: 8 rules found/);
  });

  it('log rules gain the model matchers in their stream selector', () => {
    const logRules = withTopology({ groups: [{ name: 'g', rules: [{ alert: 'A', expr: 'count_over_time({job="varlog"} [5m]) > 0' }] }] }, topology, 'logql');
    expect(logRules.groups[0]?.rules[0]?.['expr']).toBe(`count_over_time({juju_model="lab",juju_model_uuid="${topology.modelUuid}",job="varlog"} [5m]) > 0`);
  });
});
