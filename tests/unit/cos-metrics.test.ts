/** The agent's exposition: upstream's series as upstream names them, ours besides, valid for Prometheus. */
import { execFileSync } from 'node:child_process';
import { AGENT_STATES, AgentMetrics, EXPORTED_SERIES, PHASE_DURATION_BUCKETS } from '../../src/agent/metrics';

function busyAgent(): AgentMetrics {
  const m = new AgentMetrics();
  m.setAgent('dev-1');
  m.jobs.inc({ agent_id: 'dev-1' });
  m.failures.inc({ agent_id: 'dev-1', test_phase: 'provision' });
  m.recoveryFailures.inc({ agent_id: 'dev-1' });
  m.phaseDuration.observe({ agent_id: 'dev-1', test_phase: 'test', identifier: 'cid-1', release: 'noble' }, 90);
  m.setState('provision');
  m.setJob('job-42');
  m.markPoll(1_700_000_000_000);
  m.setOutbox(2);
  m.trackLiveLogs(() => ({ queued: 3, dropped: 1 }));
  return m;
}

const sample = (text: string, series: string) => text.split('\n').filter((l) => l.startsWith(series) && !l.startsWith('#'));

describe('upstream parity', () => {
  it('exports the four upstream series with upstream labels', () => {
    const text = busyAgent().render();
    expect(sample(text, 'jobs_total')).toEqual(['jobs_total{agent_id="dev-1"} 1']);
    expect(sample(text, 'failures_total')).toEqual(['failures_total{agent_id="dev-1",test_phase="provision"} 1']);
    expect(sample(text, 'recovery_failures_total')).toEqual(['recovery_failures_total{agent_id="dev-1"} 1']);
    expect(sample(text, 'phase_duration_seconds_count')).toEqual(['phase_duration_seconds_count{agent_id="dev-1",test_phase="test",identifier="cid-1",release="noble"} 1']);
  });

  it('uses upstream buckets for phase durations', () => {
    expect(PHASE_DURATION_BUCKETS).toEqual([60, 120, 300, 600, 1800, 3600, 7200, 14400]);
    const buckets = sample(busyAgent().render(), 'phase_duration_seconds_bucket').map((l) => /le="([^"]+)"\} (\d+)/.exec(l)?.slice(1));
    expect(buckets).toEqual([['60', '0'], ['120', '1'], ['300', '1'], ['600', '1'], ['1800', '1'], ['3600', '1'], ['7200', '1'], ['14400', '1'], ['+Inf', '1']]);
  });
});

describe('what the agent adds', () => {
  it('one state gauge per state, 1 for the current one', () => {
    const states = sample(busyAgent().render(), 'testflinger_agent_state{');
    expect(states).toHaveLength(AGENT_STATES.length);
    expect(states.filter((l) => l.endsWith(' 1'))).toEqual(['testflinger_agent_state{agent_id="dev-1",state="provision"} 1']);
  });

  it('the job in progress, the last poll, the outbox, and live-log fragments', () => {
    const text = busyAgent().render();
    expect(sample(text, 'testflinger_agent_job_in_progress')).toEqual(['testflinger_agent_job_in_progress{agent_id="dev-1",job_id="job-42"} 1']);
    expect(sample(text, 'testflinger_agent_last_successful_poll_timestamp_seconds')).toEqual(['testflinger_agent_last_successful_poll_timestamp_seconds{agent_id="dev-1"} 1700000000']);
    expect(sample(text, 'testflinger_agent_outbox_results')).toEqual(['testflinger_agent_outbox_results{agent_id="dev-1"} 2']);
    expect(sample(text, 'testflinger_agent_live_log_fragments_queued')).toEqual(['testflinger_agent_live_log_fragments_queued{agent_id="dev-1"} 3']);
  });

  it('keeps counting dropped fragments after the job ends, and shows no job when idle', () => {
    const m = busyAgent();
    m.trackLiveLogs(undefined);
    m.setJob(undefined);
    m.trackLiveLogs(() => ({ queued: 0, dropped: 4 }));
    const text = m.render();
    expect(sample(text, 'testflinger_agent_live_log_fragments_dropped_total')).toEqual(['testflinger_agent_live_log_fragments_dropped_total{agent_id="dev-1"} 5']);
    expect(sample(text, 'testflinger_agent_job_in_progress')).toEqual([]);
  });

  it('process metrics under the names Prometheus uses', () => {
    const text = new AgentMetrics().render();
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'process_start_time_seconds']) {
      expect(sample(text, `${name} `)).toHaveLength(1);
    }
    const start = Number(sample(text, 'process_start_time_seconds ')[0]?.split(' ')[1]);
    expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(5);
  });

  it('exports exactly the series it lists for dashboards and rules', () => {
    const names = new Set(busyAgent().render().split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));
    expect([...names].sort()).toEqual([...EXPORTED_SERIES].sort());
  });
});

it('promtool accepts the exposition', () => {
  // `check metrics` exits non-zero on a malformed exposition; lint remarks alone do not fail it.
  const out = execFileSync('promtool', ['check', 'metrics'], { input: busyAgent().render(), encoding: 'utf8', timeout: 20_000 });
  expect(out).not.toMatch(/error/i);
});
