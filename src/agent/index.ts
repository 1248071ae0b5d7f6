/** The device agent runtime: what the entry file and the tests use. */
export { Agent, offlineMarkerNames, type AgentDeps, type AgentExit } from './agent';
export { ServerApi, jobSchema, type Job } from './api';
export { ServerError, TestflingerClient, type RetryPolicy } from './client';
export { systemClock, type Clock } from './clock';
export { ConfigError, PHASES, agentConfigSchema, loadAgentConfig, parseAgentConfig, serverUrl, type AgentConfig, type Phase } from './config';
export { EXIT_RECOVERY_FAILED } from '../common/contract';
export { JobRunner, PHASE_RULES } from './job';
export { AgentMetrics } from './metrics';
