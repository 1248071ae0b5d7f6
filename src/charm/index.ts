export { AgentHostCharm } from './charm';
export { createHost, type Host } from './host';
export { hostPaths, type HostPaths } from './paths';
