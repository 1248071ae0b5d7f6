/**
 * npm's pretest (scripts/pretest.sh) on a machine that lacks the tests' programs: as root it
 * installs them with bounded, lock-tolerant apt-get runs; otherwise it stops at once and names
 * them. apt-get and id are stand-ins on a PATH that holds nothing else the script looks for.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, tempDir } from '../helpers/tmp';

const SCRIPT = path.join(repoRoot, 'scripts', 'pretest.sh');
/** Programs of the other packages pretest asks for, present here so each test names only the ones above. */
const ALSO_PRESENT = ['prometheus', 'promtool', 'xz', 'curl', 'python3', 'setpriv', 'useradd', 'setfacl', 'sshpass', 'zstd', 'zstdcat', 'mosquitto_passwd', 'mosquitto_sub', 'mosquitto_pub'];
const PROGRAMS_OF = { supervisor: ['supervisord', 'supervisorctl'], git: ['git'], 'openssh-client': ['ssh', 'ssh-keygen'], bubblewrap: ['bwrap'] } as const;

/** A bin dir with bash's helpers, `id` answering uid, and an apt-get that logs its calls and fails its first `failures` installs. */
function fakeMachine(uid: number, options: { failures?: number; present?: string[] } = {}) {
  const bin = tempDir('pretest-bin');
  const log = path.join(bin, 'apt.log');
  for (const tool of ['bash', 'sleep', 'timeout', 'grep', 'chmod']) fs.symlinkSync(execPathOf(tool), path.join(bin, tool));
  const script = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  script('id', `echo ${uid}`);
  // "Installing" a package creates its programs in the bin dir.
  const provide = Object.entries(PROGRAMS_OF)
    .map(([pkg, programs]) => `case " $* " in *" ${pkg} "*) for p in ${programs.join(' ')}; do printf '#!/bin/sh\\n' > ${bin}/$p; chmod +x ${bin}/$p; done ;; esac`)
    .join('\n');
  script(
    'apt-get',
    `echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> ${log}
if [[ " $* " == *" install "* ]]; then
  n=$(grep -c ' install ' ${log})
  [ "$n" -le ${options.failures ?? 0} ] && exit 100
  ${provide}
fi
exit 0`,
  );
  for (const program of [...ALSO_PRESENT, ...(options.present ?? [])]) script(program, 'exit 0');
  const run = () => spawnSync('bash', [SCRIPT], { env: { PATH: bin, PRETEST_RETRY_PAUSE_S: '0' }, encoding: 'utf8', timeout: 30_000 });
  const aptCalls = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : []);
  return { run, aptCalls };
}

function execPathOf(tool: string): string {
  const found = ['/usr/bin', '/bin'].map((d) => path.join(d, tool)).find((f) => fs.existsSync(f));
  if (!found) throw new Error(`no ${tool} on this machine`);
  return found;
}

it('not root: stops at once, names the packages and the command, installs nothing', () => {
  const machine = fakeMachine(1000, { present: ['git'] });
  const result = machine.run();
  expect(result.status).toBe(1);
  expect(result.stderr).toMatch(/the tests need the Debian packages: supervisor openssh-client bubblewrap\n/);
  expect(result.stderr).toContain('sudo apt-get install -y supervisor openssh-client bubblewrap');
  expect(machine.aptCalls()).toEqual([]);
});

it('root: installs what is missing non-interactively, waiting on the dpkg lock, retrying a failed run (bounded)', () => {
  const machine = fakeMachine(0, { failures: 2 });
  const result = machine.run();
  expect(result.stderr).toMatch(/apt-get failed \(attempt 2 of 3\)/);
  expect(result.status).toBe(0);
  const installs = machine.aptCalls().filter((c) => / install /.test(c));
  expect(installs).toHaveLength(3);
  expect(installs.at(-1)).toBe('DEBIAN_FRONTEND=noninteractive -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends supervisor git openssh-client bubblewrap');
  expect(machine.aptCalls().filter((c) => / update$/.test(c))).toHaveLength(3);
});

it('root: gives up after three failed runs and says so', () => {
  const machine = fakeMachine(0, { failures: 99 });
  const result = machine.run();
  expect(result.status).toBe(1);
  expect(result.stderr).toMatch(/could not install supervisor git openssh-client bubblewrap with apt-get after 3 attempts/);
  expect(machine.aptCalls().filter((c) => / install /.test(c))).toHaveLength(3);
});

it('everything present: does nothing', () => {
  const machine = fakeMachine(0, { present: ['supervisord', 'supervisorctl', 'git', 'ssh', 'ssh-keygen', 'bwrap'] });
  expect(machine.run().status).toBe(0);
  expect(machine.aptCalls()).toEqual([]);
});
