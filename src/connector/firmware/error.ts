import { ConnectorError } from '../errors';

/** A firmware update that did not go through: exit 1, or 0 when the job set ignore_failure, as upstream. */
export class FirmwareUpdateError extends ConnectorError {
  override readonly name = 'FirmwareUpdateError';
}
