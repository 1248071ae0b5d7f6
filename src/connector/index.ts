/** The device connector: run one phase for one device type. */
export { parseCommandLine, USAGE } from './cli';
export { loadDeviceConfig, loadJobFile, type DeviceConfig, type JobFile } from './config';
export { EXIT_RECOVERY_FAILED } from '../common/contract';
export { EXIT_PHASE_FAILED, runConnectorPhase } from './connector';
export { CONNECTOR_PHASES, DEVICE_TYPES, resolveDeviceType, type DeviceType } from './devices';
export { ConnectorError, JobError, RecoveryError, UsageError, writeErrorFile } from './errors';
