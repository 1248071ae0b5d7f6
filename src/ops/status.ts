import type { StatusName } from './jujurules';

export { SETTABLE_STATUSES, type StatusName } from './jujurules';

export abstract class StatusBase {
  abstract readonly name: StatusName;
  constructor(readonly message = '') {}
  toString(): string {
    return this.message ? `${this.name}: ${this.message}` : this.name;
  }
  equals(other: StatusBase | undefined): boolean {
    return other !== undefined && other.name === this.name && other.message === this.message;
  }
}
export class ActiveStatus extends StatusBase {
  readonly name = 'active';
}
export class BlockedStatus extends StatusBase {
  readonly name = 'blocked';
}
export class MaintenanceStatus extends StatusBase {
  readonly name = 'maintenance';
}
export class WaitingStatus extends StatusBase {
  readonly name = 'waiting';
}

export function statusFromName(name: string, message = ''): StatusBase {
  switch (name) {
    case 'active':
      return new ActiveStatus(message);
    case 'blocked':
      return new BlockedStatus(message);
    case 'maintenance':
      return new MaintenanceStatus(message);
    case 'waiting':
      return new WaitingStatus(message);
    default:
      throw new Error(`unknown status "${name}"`);
  }
}


/**
 * ops' order of statuses, most urgent first: of the statuses a collect-status event gathers, the
 * one set is the highest here (error and unknown only rank: status-set refuses them).
 */
const PRIORITY: Readonly<Record<string, number>> = { error: 5, blocked: 4, maintenance: 3, waiting: 2, active: 1, unknown: 0 };

/** The most urgent status, the first added on a tie (as ops picks); undefined when none was added. */
export function highestPriority(statuses: readonly StatusBase[]): StatusBase | undefined {
  let highest: StatusBase | undefined;
  for (const status of statuses) if (!highest || (PRIORITY[status.name] ?? 0) > (PRIORITY[highest.name] ?? 0)) highest = status;
  return highest;
}
