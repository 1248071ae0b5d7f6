/** The device connector: run one phase for one device type. */
export { loadDeviceConfig, loadJobFile, type DeviceConfig, type JobFile } from './config';
export { EXIT_RECOVERY_FAILED, runConnectorPhase } from './connector';
export { CONNECTOR_PHASES, DEVICE_TYPES, type DeviceType } from './devices';
export { ConnectorError, RecoveryError, writeErrorFile } from './errors';
