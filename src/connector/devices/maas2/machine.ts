/**
 * The machine's life in MAAS as a job sees it: released back to Ready, given its storage,
 * allocated, deployed and waited for until the test image answers over SSH. A deploy that fails
 * or takes too long is released again and reported with MAAS's own account of it.
 */
import { ConnectorError, RecoveryError } from '../../errors';
import { testUsername, type PhaseContext } from '../../phases';
import { sshRun } from '../../ssh';
import { pollUntil, recoveryFailed } from '../../steps';
import { quoted } from '../../../common/text';
import { MaasCli } from './cli';
import type { Maas2Config, Maas2Provision, StorageLayout } from './config';
import { applyStorageLayout } from './storage';

/** MAAS 3.5 brought RAM-only (ephemeral) deploys. */
const EPHEMERAL_SINCE = [3, 5, 0];
/** How many of MAAS's events about the machine a failure report shows. */
const EVENTS_SHOWN = 10;
/** How many lines of the installation log a failure report shows. */
const LOG_LINES_SHOWN = 20;

export class Machine {
  readonly maas: MaasCli;
  /** The installation result MAAS had before this deploy, so a failure reports only the new one. */
  private installationBefore: number | undefined;

  constructor(
    private readonly ctx: PhaseContext,
    readonly config: Maas2Config,
  ) {
    this.maas = new MaasCli(ctx, config);
  }

  private get name(): string {
    return quoted(this.config.node_name ?? this.config.agent_name ?? this.config.node_id);
  }

  private say(line: string): void {
    this.ctx.print(`MAAS: ${line}`);
  }

  private waitFor(status: string, seconds: number) {
    return pollUntil(this.ctx, () => this.maas.status(), (s) => s === status, { seconds, everySeconds: Math.min(10, this.config.maas_poll_seconds) });
  }

  /**
   * Releases the machine and waits for Ready. A release that does not get there is kicked as
   * upstream kicks it (mark broken then fixed, then power off); a machine still not Ready
   * cannot take another job: a recovery failure.
   */
  async release(): Promise<void> {
    this.say(`releasing ${this.name}`);
    await this.maas.call(['machine', 'release', this.config.node_id]);
    const released = await this.waitFor('Ready', this.config.maas_release_wait_seconds);
    if (released.done) return this.say(`${this.name} is Ready`);
    this.say(`${this.name} still ${quoted(released.value)} after release; marking it broken and fixed`);
    const kickWait = Math.min(30, this.config.maas_release_wait_seconds);
    const kicks: string[][] = [
      ['mark-broken', 'mark-fixed'],
      ['power-off'],
    ];
    let last = released.value;
    for (const kick of kicks) {
      try {
        for (const action of kick) await this.maas.call(['machine', action, this.config.node_id]);
      } catch (error) {
        this.say((error as Error).message);
      }
      const after = await this.waitFor('Ready', kickWait);
      if (after.done) return this.say(`${this.name} is Ready`);
      last = after.value;
    }
    throw recoveryFailed(`${this.name} could not be released: MAAS still reports ${quoted(last)}`);
  }

  async setStorage(layout: StorageLayout | undefined): Promise<void> {
    if (layout) {
      this.say(`applying the storage layout (${layout.length} entries)`);
      return applyStorageLayout(this.maas, this.config.node_id, layout);
    }
    this.say('no storage layout given (disks, default_disks): using the flat layout');
    try {
      await this.maas.once(['machine', 'set-storage-layout', this.config.node_id, 'storage_layout=flat']);
    } catch (error) {
      // As upstream: the layout MAAS has is usually fine to deploy on.
      this.say(`setting the flat layout failed, deploying anyway: ${(error as Error).message}`);
    }
  }

  private async latestInstallation(): Promise<number | undefined> {
    const results = await this.maas.json<unknown>(['node-script-results', 'read', this.config.node_id, 'type=installation']);
    const ids = (Array.isArray(results) ? results : []).map((r) => Number((r as { id?: unknown })?.id)).filter(Number.isInteger);
    return ids.length === 0 ? undefined : Math.max(...ids);
  }

  private async supportsEphemeral(): Promise<boolean> {
    try {
      const { version = '' } = await this.maas.json<{ version?: string }>(['version', 'read']);
      const parts = version.split('.').map(Number);
      const newer = EPHEMERAL_SINCE.findIndex((min, i) => (parts[i] ?? 0) !== min);
      return newer === -1 || (parts[newer] ?? 0) > (EPHEMERAL_SINCE[newer] ?? 0);
    } catch (error) {
      this.say(`cannot tell the MAAS version (${(error as Error).message}); deploying to disk`);
      return false;
    }
  }

  private async deployArgs(image: Maas2Provision): Promise<string[]> {
    const args = ['machine', 'deploy', this.config.node_id, `distro_series=${image.distro}`];
    if (image.os) args.push(`osystem=${image.os}`);
    if (image.kernel) args.push(`hwe_kernel=${image.kernel}`);
    if (image.user_data) args.push(`user_data=${Buffer.from(image.user_data).toString('base64')}`);
    if (image.ephemeral && (await this.supportsEphemeral())) args.push('ephemeral_deploy=true');
    return args;
  }

  /** Allocates and starts the deploy; waits for nothing. */
  async startDeploy(image: Maas2Provision): Promise<void> {
    this.say(`allocating ${this.name}`);
    await this.maas.call(['machines', 'allocate', `system_id=${this.config.node_id}`, ...(image.arch ? [`arch=${image.arch}`] : [])]);
    this.installationBefore = await this.latestInstallation();
    this.say(`deploying ${this.name} with ${image.os ?? 'ubuntu'} ${image.distro}${image.kernel ? ` (kernel ${image.kernel})` : ''}`);
    await this.maas.call(await this.deployArgs(image));
  }

  /** One look at the deploy: MAAS's status, and once Deployed, whether the image answers. */
  private async progress(): Promise<DeployProgress> {
    const machine = await this.maas.machine();
    const status = machine.status_name ?? 'Unknown';
    if (status === 'Failed deployment') return { kind: 'failed', why: 'MAAS reports Failed deployment' };
    if (status !== 'Deployed') return { kind: 'waiting', status };
    const addresses = machine.ip_addresses ?? [];
    if (!addresses.includes(this.config.device_ip)) {
      return { kind: 'failed', why: `the device config's device_ip ${quoted(this.config.device_ip)} is none of the machine's addresses in MAAS (${quoted(addresses)})` };
    }
    const ssh = await sshRun(this.ctx.device, testUsername(this.ctx), 'true', undefined, 60_000);
    return ssh.exitCode === 0 ? { kind: 'booted' } : { kind: 'waiting', status: 'Deployed, not answering over SSH yet' };
  }

  /** Waits (at most timeout_min) until the test image answers; a failure releases the machine and says why. */
  async awaitDeployed(): Promise<void> {
    const seconds = this.config.timeout_min * 60;
    let lastStatus = '';
    const outcome = await pollUntil(
      this.ctx,
      async () => {
        const progress = await this.progress();
        if (progress.kind === 'waiting' && progress.status !== lastStatus) this.say(`${this.name}: ${(lastStatus = progress.status)}`);
        return progress;
      },
      (progress) => progress.kind !== 'waiting',
      { seconds, everySeconds: this.config.maas_poll_seconds },
    );
    if (outcome.value.kind === 'booted') return this.say(`${this.name} deployed and booted`);
    const why = outcome.value.kind === 'failed' ? outcome.value.why : `the deploy took more than ${this.config.timeout_min} minutes (last status: ${lastStatus})`;
    await this.failDeploy(why);
  }

  /** MAAS's events about the machine, oldest first: its account of what went wrong. */
  async eventsExcerpt(): Promise<string[]> {
    try {
      const { events = [] } = await this.maas.json<{ events?: MaasEvent[] }>(['events', 'query', `id=${this.config.node_id}`, `limit=${EVENTS_SHOWN}`]);
      return events
        .slice(0, EVENTS_SHOWN)
        .reverse()
        .map((e) => `${e.created ?? ''} ${e.type ?? ''}${e.description ? `: ${e.description}` : ''}`.trim());
    } catch (error) {
      return [`(cannot read MAAS events: ${(error as Error).message})`];
    }
  }

  /** The end of the installation log, when this deploy produced one. */
  async installationLogTail(): Promise<string[]> {
    try {
      const latest = await this.latestInstallation();
      if (latest === undefined || latest === this.installationBefore) return [];
      const log = await this.maas.call(['node-script-result', 'download', this.config.node_id, String(latest)]);
      return log.trimEnd().split('\n').slice(-LOG_LINES_SHOWN);
    } catch {
      return [];
    }
  }

  /** Reports why (MAAS's events and installation log), releases the machine, and fails the phase. */
  private async failDeploy(why: string): Promise<never> {
    this.say(`deploy of ${this.name} failed: ${why}`);
    const events = await this.eventsExcerpt();
    const log = await this.installationLogTail();
    for (const line of events) this.say(`event: ${line}`);
    for (const line of log) this.say(`installation log: ${line}`);
    const report = `deploy of ${this.name} failed: ${why}${events.length > 0 ? `; MAAS events: ${events.join(' | ')}` : ''}`;
    try {
      await this.release();
    } catch (error) {
      if (error instanceof RecoveryError) throw recoveryFailed(`${report}; then ${error.message}`, error);
      this.say(`releasing after the failed deploy failed: ${(error as Error).message}`);
    }
    throw new ConnectorError(report);
  }
}

type DeployProgress = { kind: 'waiting'; status: string } | { kind: 'failed'; why: string } | { kind: 'booted' };

interface MaasEvent {
  created?: string;
  type?: string;
  description?: string;
}
