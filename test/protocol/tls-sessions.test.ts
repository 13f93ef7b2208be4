import https from 'node:https';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { TlsSessionCache } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';

let tls: TestTls;
let server: https.Server;
let port: number;
/** Per accepted connection: whether the server resumed it. */
const resumed: boolean[] = [];

beforeAll(async () => {
  tls = makeTestTls();
  server = https.createServer({ key: tls.key, cert: tls.cert });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    resumed.push((req.socket as TLSSocket).isSessionReused());
    ws.send('hello');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

afterAll(() => {
  server?.closeAllConnections();
  server?.close();
});

/** One ws dial; resolves with whether the client's TLS session was resumed. */
function dial(host: string, opts: { cache?: TlsSessionCache; ca?: string }): Promise<boolean> {
  const secureContext = createSecureContext({ ca: opts.ca ?? tls.ca });
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://${host}:${port}/`, {
      ...{ secureContext },
      perMessageDeflate: false,
      ...(opts.cache ? { createConnection: opts.cache.connect } : {}),
    });
    ws.once('error', reject);
    ws.once('message', () => {
      const reused = (ws as unknown as { _socket: TLSSocket })._socket.isSessionReused();
      ws.close();
      ws.once('close', () => resolve(reused));
    });
  });
}

describe('TlsSessionCache: TLS session resumption for relay dials', () => {
  it('the first dial is a full handshake, later dials to the same name and port resume', async () => {
    const cache = new TlsSessionCache();
    const first = resumed.length;
    expect(await dial('localhost', { cache })).toBe(false);
    expect(await dial('localhost', { cache })).toBe(true);
    expect(await dial('localhost', { cache })).toBe(true);
    expect(resumed.slice(first)).toEqual([false, true, true]);
    expect(cache.size).toBe(1);
  });

  it('a ticket is offered only to the name it came from (127.0.0.1 is another key than localhost)', async () => {
    const cache = new TlsSessionCache();
    expect(await dial('localhost', { cache })).toBe(false);
    expect(await dial('127.0.0.1', { cache })).toBe(false);
    expect(await dial('127.0.0.1', { cache })).toBe(true);
    expect(cache.size).toBe(2);
  });

  it('without a cache, every dial is a full handshake (ws keeps no sessions of its own)', async () => {
    expect(await dial('localhost', {})).toBe(false);
    expect(await dial('localhost', {})).toBe(false);
  });

  it('certificate checks still apply to a dial that has no ticket: a wrong CA is refused', async () => {
    const cache = new TlsSessionCache();
    const other = makeTestTls();
    await expect(dial('localhost', { cache, ca: other.ca })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(cache.size).toBe(0);
  });
});
