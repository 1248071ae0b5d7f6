/** The demo's steps, headless: a job completes and the third agent starts alone. */
import { runDemo } from '../../src/demo/demo';
import { haveMosquitto } from '../helpers/mosquitto';
import { repoRoot } from '../helpers/tmp';

jest.setTimeout(120_000);

it('runs the whole agent host locally: deploy, a job to completion, update-configs adding one agent', async () => {
  const lines: string[] = [];
  const summary = await runDemo({ charmDir: repoRoot, print: (l) => lines.push(l) });
  expect(summary.jobResult).toMatchObject({ job_state: 'complete', setup_status: 0, provision_status: 0, test_status: 0, cleanup_status: 0 });
  expect(String(summary.jobResult['test_output'])).toMatch(/testing 127\.0\.0\.1/);
  expect(summary.updateConfigsResults).toMatchObject({ added: 'demo-agent-3', removed: '', changed: '', restarted: '', agents: '3' });
  expect(summary.pidsAfter).toEqual(summary.pidsBefore);
  expect(Object.values(summary.pidsBefore).every((p) => typeof p === 'number')).toBe(true);
  expect(summary.finalStatus).toBe('active: 3 agents: 3 waiting');
  expect(lines.join('\n')).toMatch(/supervisord and the dev server stopped; sandbox removed/);
  // With mosquitto here, the job came over MQTT too, from the runtime as the charm installed it.
  if (haveMosquitto()) expect(lines.join('\n')).toMatch(new RegExp(`/demo-agent-\\d/last_job \\{"id":"${summary.jobId}","state":"complete"`));
});
