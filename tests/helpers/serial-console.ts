/**
 * A console server on 127.0.0.1, as a lab's serial-over-TCP concentrator (ser2net): it writes
 * `output` to each connection, and with `hangUp` then closes it (a console server that drops
 * its clients). Closed after the test file.
 */
import * as net from 'node:net';
import { onCleanup } from './tmp';

export interface SerialConsole {
  port: number;
  close(): Promise<void>;
}

/** `output`: the text, or what to write at the moment a client connects. */
export async function serialConsole(output: string | (() => string), options: { hangUp?: boolean } = {}): Promise<SerialConsole> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    const text = typeof output === 'string' ? output : output();
    if (options.hangUp) socket.end(text);
    else socket.write(text);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = async (): Promise<void> => {
    if (!server.listening) return;
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => server.close(r));
  };
  onCleanup(close);
  return { port: (server.address() as net.AddressInfo).port, close };
}
