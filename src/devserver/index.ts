export { DevServer, type DevServerOptions, type Override, type RequestRecord } from './server';
