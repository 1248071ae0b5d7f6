export { DevServer, type DevServerOptions, type RequestRecord } from './server';
