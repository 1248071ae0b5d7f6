/** Connector failures, and the file the agent reads to learn why a phase failed. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONNECTOR_ERROR_FILE } from '../common/contract';

export class ConnectorError extends Error {
  override readonly name: string = 'ConnectorError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The device could not be reached or brought back; the agent takes it offline. */
export class RecoveryError extends ConnectorError {
  override readonly name = 'RecoveryError';
}

/** The command line or the device config is wrong: the operator's to fix. */
export class UsageError extends ConnectorError {
  override readonly name = 'UsageError';
}

/** The job asked for something this connector refuses (a bad test_username, say): the job fails, the device stays online. */
export class JobError extends ConnectorError {
  override readonly name = 'JobError';
}

/** Writes device-connector-error.json: `{"<phase>_exception_info": {...}}`, merged with earlier ones. */
export function writeErrorFile(runDir: string, phase: string, error: unknown): void {
  const file = path.join(runDir, CONNECTOR_ERROR_FILE);
  let existing: Record<string, unknown> = {};
  try {
    existing = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    // first error of this job
  }
  const err = error instanceof Error ? error : new Error(String(error));
  const cause = err.cause instanceof Error ? `${err.cause.name}: ${err.cause.message}` : err.cause === undefined ? '' : String(err.cause);
  existing[`${phase}_exception_info`] = { exception_name: err.name, exception_message: err.message, exception_cause: cause };
  fs.writeFileSync(file, `${JSON.stringify(existing, null, 2)}\n`);
}
