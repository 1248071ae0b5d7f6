/** The agent's status: one owner of its metrics and of the state it posts to the server. */
import type { ServerApi } from '../../src/agent/api';
import { silentLogger } from '../../src/agent/logger';
import { AgentMetrics } from '../../src/agent/metrics';
import { AgentStatus } from '../../src/agent/status';
import { parseAgentView } from '../../src/charm/operations/metrics';

const finished = (id: string) => ({ id, state: 'complete', phases: {} });

function agentStatus() {
  const posts: Record<string, unknown>[] = [];
  const api = { postAgentData: async (_agent: string, data: Record<string, unknown>) => void posts.push(data), postProvisionLog: async () => undefined } as unknown as ServerApi;
  const metrics = new AgentMetrics();
  return { status: new AgentStatus(api, 'dev-1', metrics, silentLogger), posts, view: () => parseAgentView(metrics.render()) };
}

describe('AgentStatus', () => {
  it('posts each phase and shows it in the metrics, with the job in progress', async () => {
    const { status, posts, view } = agentStatus();
    await status.jobTaken('job-1');
    await status.phaseStarted('provision');
    expect(posts).toEqual([{ job_id: 'job-1' }, { state: 'provision', comment: '' }]);
    expect(view()).toEqual({ state: 'provision', jobId: 'job-1' });
    status.jobCleared();
    expect(view().jobId).toBeUndefined();
  });

  it('keeps the agent offline past the end of a job whose recovery failed, and only that job', async () => {
    const { status, posts, view } = agentStatus();
    await status.jobTaken('job-1');
    await status.recoveryFailed('Device recovery failed');
    await status.jobEnded(finished('job-1'));
    expect(posts.slice(-2)).toEqual([{ state: 'offline', comment: 'Device recovery failed' }, { job_id: '' }]);
    expect(view().state).toBe('offline');

    // The operator brought the device back; the next job ends as any other.
    await status.jobTaken('job-2');
    await status.jobEnded(finished('job-2'));
    expect(posts.at(-1)).toEqual({ job_id: '', state: 'waiting' });
  });
});
