import { once } from 'node:events';
import type net from 'node:net';
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws';
import { Queue } from './queue.js';

// Two ends of a plain ws:// WebSocket on loopback, for tests of what goes over one. A TCP read is
// at most 64 KiB here, so a larger message arrives in several reads, as a DATA frame over TLS does
// past 16 KiB.

export const KiB = 1024;
const cleanups: Array<() => Promise<void>> = [];

/** Closes every pair made since the last call (a test file's afterEach). */
export async function closePairs(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!();
}

/** A client WebSocket and the server's side of it, both open. */
export async function pair(serverOpts: { maxPayload?: number } = {}, clientOpts: ClientOptions = {}): Promise<{ cws: WebSocket; sws: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, ...serverOpts });
  await once(wss, 'listening');
  const serverSide = once(wss, 'connection');
  const cws = new WebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`, { perMessageDeflate: false, ...clientOpts });
  cleanups.push(async () => {
    cws.terminate();
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  await once(cws, 'open');
  const [sws] = (await serverSide) as [WebSocket];
  return { cws, sws };
}

/** The messages `ws` receives, in order. */
export function messages(ws: WebSocket): Queue<{ data: Buffer | Buffer[]; isBinary: boolean }> {
  const q = new Queue<{ data: Buffer | Buffer[]; isBinary: boolean }>();
  ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => q.push({ data, isBinary }));
  return q;
}

/** A message as one Buffer, whether the WebSocket delivers it whole or in parts (binaryType 'fragments'). */
export const whole = (m: Buffer | Buffer[]): Buffer => (Array.isArray(m) ? Buffer.concat(m) : m);
