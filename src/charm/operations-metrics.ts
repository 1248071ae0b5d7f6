/**
 * The agent's own view of itself, read from its metrics endpoint on 127.0.0.1 (the series are
 * src/agent/metrics.ts's): its state, the job in progress and its last successful poll.
 */
import * as http from 'node:http';

export interface AgentView {
  /** The state the agent last reported (waiting, test, offline, ...), if it said one. */
  state?: string;
  /** The job it is running, if any. */
  jobId?: string;
  /** Unix seconds of the last poll the server answered, if there was one. */
  lastPoll?: number;
}

const SCRAPE_TIMEOUT_MS = 1500;
/** An agent's metrics are a few KiB; anything much larger is not what we asked for. */
const SCRAPE_MAX_BYTES = 256 * 1024;
const SAMPLE = /^([a-z_]+)\{([^}]*)\} (\S+)$/;
const LABEL = /([a-z_]+)="((?:[^"\\]|\\.)*)"/g;

function labelsOf(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [, key, value] of text.matchAll(LABEL)) labels[key as string] = (value as string).replace(/\\(.)/g, '$1');
  return labels;
}

/** The three series we read; every other line is ignored. */
export function parseAgentView(text: string): AgentView {
  const view: AgentView = {};
  for (const line of text.split('\n')) {
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const [, series, labelText, value] = match as unknown as [string, string, string, string];
    const labels = labelsOf(labelText);
    if (series === 'testflinger_agent_state' && Number(value) === 1 && labels['state']) view.state = labels['state'];
    else if (series === 'testflinger_agent_job_in_progress' && labels['job_id']) view.jobId = labels['job_id'];
    else if (series === 'testflinger_agent_last_successful_poll_timestamp_seconds') view.lastPoll = Number(value);
  }
  return view;
}

/** Scrapes one agent (bounded in time and size); rejects when it does not answer. */
export function scrapeAgent(port: number): Promise<AgentView> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: SCRAPE_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > SCRAPE_MAX_BYTES) req.destroy(new Error('metrics answer too large'));
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(parseAgentView(body)) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${SCRAPE_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}
