/** A console server on 127.0.0.1, as a lab's serial-over-TCP concentrator: it writes `lines` to each connection. */
import * as net from 'node:net';

export interface SerialConsole {
  port: number;
  close(): Promise<void>;
}

export async function serialConsole(lines: string[]): Promise<SerialConsole> {
  const server = net.createServer((socket) => socket.write(lines.map((line) => `${line}\r\n`).join('')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}
