/**
 * Agent state and provision-log posts that must land: each is retried at every chance until
 * the server takes it, and a newer state replaces an older one still waiting.
 */
import type { ServerApi } from './api';
import type { Logger } from './logger';

export interface ProvisionLogEntry {
  job_id: string;
  exit_code: number;
  detail: string;
}

export class AgentReporter {
  private pendingData: Record<string, unknown> | undefined;
  private pendingProvisionLogs: ProvisionLogEntry[] = [];

  constructor(
    private readonly api: ServerApi,
    private readonly agent: string,
    private readonly log: Logger,
  ) {}

  /** Merges the patch into what is waiting (newer keys win) and tries to send it now. */
  async setData(patch: Record<string, unknown>): Promise<boolean> {
    this.pendingData = { ...this.pendingData, ...patch };
    return this.flush();
  }

  async provisionLog(entry: ProvisionLogEntry): Promise<boolean> {
    this.pendingProvisionLogs.push(entry);
    return this.flush();
  }

  get hasPending(): boolean {
    return this.pendingData !== undefined || this.pendingProvisionLogs.length > 0;
  }

  /** Returns true when nothing is left waiting. */
  async flush(): Promise<boolean> {
    const data = this.pendingData;
    if (data) {
      try {
        await this.api.postAgentData(this.agent, data);
        if (this.pendingData === data) this.pendingData = undefined;
      } catch (error) {
        this.log.warning(`agent state not posted yet, will retry: ${(error as Error).message}`);
      }
    }
    while (this.pendingProvisionLogs.length > 0) {
      try {
        await this.api.postProvisionLog(this.agent, this.pendingProvisionLogs[0] as ProvisionLogEntry);
        this.pendingProvisionLogs.shift();
      } catch (error) {
        this.log.warning(`provision log not posted yet, will retry: ${(error as Error).message}`);
        break;
      }
    }
    return !this.hasPending;
  }
}
