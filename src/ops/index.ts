export * from './actionresults';
export * from './backend';
export * from './context';
export * from './errors';
export * from './framework';
export type { LogLevel, SecretRef, StatusReading, ToolRunner } from './hookcmds';
export { execaToolRunner } from './hookcmds';
export * from './main';
export * from './status';
