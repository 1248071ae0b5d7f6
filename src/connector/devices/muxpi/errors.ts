/** Upstream's name for muxpi's failures that fail the job (exit 1); the device stays online. */
import { ConnectorError } from '../../errors';

export class ProvisioningError extends ConnectorError {
  override readonly name = 'ProvisioningError';
}
