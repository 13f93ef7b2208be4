import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { freePort } from './ports.js';

/** A local TCP service on the device side, counting the connections it accepted. */
export interface Target {
  port: number;
  connections: number;
  close(): Promise<void>;
}

async function listen(handler: (s: net.Socket) => void): Promise<Target> {
  const sockets = new Set<net.Socket>();
  const t = { port: 0, connections: 0 } as Target;
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    t.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    handler(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.port = (srv.address() as net.AddressInfo).port;
  t.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  };
  return t;
}

/** Echoes every byte back; ends its side after the peer's EOF. */
export function echoTarget(): Promise<Target> {
  return listen((s) => s.pipe(s));
}

/** Reads until EOF, then answers with the SHA-256 (hex) and byte count of what it read, and ends. */
export function digestTarget(): Promise<Target> {
  return listen((s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    s.on('end', () => s.end(`${h.digest('hex')} ${n}\n`));
  });
}

/** Accepts and holds connections open without answering. */
export function holdTarget(): Promise<Target> {
  return listen(() => {});
}

/**
 * A port on which nothing listens: one from this worker's block (test/helpers/ports.ts), so no
 * port-0 bind or outgoing connection takes it later and no later freePort() hands it out.
 */
export function closedPort(): Promise<number> {
  return freePort();
}
