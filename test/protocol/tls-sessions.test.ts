import https from 'node:https';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { TlsSessionCache } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';

let tls: TestTls;
let server: https.Server;
let port: number;
/** Per accepted connection: whether the server resumed it. */
const resumed: boolean[] = [];
/** TLS connections the server accepted, and how many of them have closed. */
let accepted = 0;
let closed = 0;

beforeAll(async () => {
  tls = makeTestTls();
  server = https.createServer({ key: tls.key, cert: tls.cert });
  server.on('secureConnection', (socket: TLSSocket) => {
    accepted++;
    socket.once('close', () => closed++);
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    resumed.push((req.socket as TLSSocket).isSessionReused());
    ws.send('hello');
    ws.on('message', (m) => ws.send(m)); // echo
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
function dial(host: string, opts: { cache?: TlsSessionCache; ca?: string; secureContext?: SecureContext }): Promise<boolean> {
  const secureContext = opts.secureContext ?? createSecureContext({ ca: opts.ca ?? tls.ca });
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

describe('TlsSessionCache.preconnect: the TLS connection opened ahead of its dial', () => {
  it('the next dial to the same name, port and context takes the connection opened ahead: no second connection', async () => {
    const cache = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: tls.ca });
    const before = accepted;
    const release = cache.preconnect(new URL(`https://localhost:${port}/api`), { secureContext });
    expect(cache.warmCount).toBe(1);
    await vi.waitFor(() => expect(accepted).toBe(before + 1)); // its handshake is done before the dial comes
    const ws = new WebSocket(`wss://localhost:${port}/`, { ...{ secureContext }, perMessageDeflate: false, createConnection: cache.connect });
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(m.toString()));
    await once(ws, 'open');
    expect(accepted).toBe(before + 1);
    expect(cache.warmCount).toBe(0);
    release(); // the dial took it: releasing leaves it alone
    ws.send('still open');
    await vi.waitFor(() => expect(messages).toEqual(['hello', 'still open']));
    ws.close();
    await once(ws, 'close');
  });

  it('a dial through another secure context (other trust anchors) does not take it; release closes it', async () => {
    await vi.waitFor(() => expect(closed).toBe(accepted)); // earlier tests' connections are all closed
    const cache = new TlsSessionCache();
    const before = accepted;
    const closedBefore = closed;
    const release = cache.preconnect(new URL(`wss://localhost:${port}/`), { secureContext: createSecureContext({ ca: tls.ca }) });
    await dial('localhost', { cache, secureContext: createSecureContext({ ca: tls.ca }) });
    await vi.waitFor(() => expect(accepted).toBe(before + 2)); // the dial made its own connection
    expect(cache.warmCount).toBe(1);
    release();
    expect(cache.warmCount).toBe(0);
    await vi.waitFor(() => expect(closed).toBe(closedBefore + 2)); // the dial's, closed by the test, and the one opened ahead
  });

  it('a dial to another name or port does not take it', async () => {
    const cache = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: tls.ca });
    const release = cache.preconnect(new URL(`https://127.0.0.1:${port}/`), { secureContext });
    const before = accepted;
    await dial('localhost', { cache, secureContext });
    expect(cache.warmCount).toBe(1);
    expect(accepted).toBeGreaterThan(before);
    release();
    expect(cache.warmCount).toBe(0);
  });

  it('a connection opened ahead is verified as a dial is: a wrong CA fails, quietly, and the dial is refused on its own', async () => {
    const cache = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: makeTestTls().ca });
    const release = cache.preconnect(new URL(`https://localhost:${port}/`), { secureContext });
    await vi.waitFor(() => expect(cache.warmCount).toBe(0)); // it failed verification and was forgotten, with no unhandled error
    await expect(dial('localhost', { cache, secureContext })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    release();
    expect(cache.size).toBe(0);
  });

  it('a connection nobody takes is closed after its idle time (before the hub would close it unauthenticated)', async () => {
    await vi.waitFor(() => expect(closed).toBe(accepted));
    const cache = new TlsSessionCache(32, 100);
    const before = accepted;
    const release = cache.preconnect(new URL(`https://localhost:${port}/`), { secureContext: createSecureContext({ ca: tls.ca }) });
    await vi.waitFor(() => expect(accepted).toBe(before + 1));
    await vi.waitFor(() => expect(closed).toBe(before + 1)); // closed by the client, 100 ms on
    expect(cache.warmCount).toBe(0);
    release(); // nothing left to close
  });

  it('streams set up at once share the waiting connections: a release leaves one that another pending dial can take', async () => {
    const cache = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: tls.ca });
    const url = new URL(`https://localhost:${port}/`);
    const before = accepted;
    const releaseA = cache.preconnect(url, { secureContext });
    const releaseB = cache.preconnect(url, { secureContext });
    await vi.waitFor(() => expect(accepted).toBe(before + 2));
    await dial('localhost', { cache, secureContext }); // B dials first, and takes the oldest: A's
    releaseB(); // A has not dialled yet: B's connection stays for it
    expect(cache.warmCount).toBe(1);
    await dial('localhost', { cache, secureContext });
    releaseA();
    expect(accepted).toBe(before + 2); // two streams, two connections, none dialled late
    expect(cache.warmCount).toBe(0);
  });

  it('options tls.connect refuses at once open nothing and throw nothing: the dial reports them', () => {
    const cache = new TlsSessionCache();
    const release = cache.preconnect(new URL(`https://localhost:${port}/`), { minVersion: 'TLSv9' as never });
    expect(cache.warmCount).toBe(0);
    release();
  });
});

describe('TlsSessionCache.spare: one connection kept for the next dial', () => {
  it('the next dial takes the spare; a second spare is not opened while one waits; closeWaiting closes it', async () => {
    await vi.waitFor(() => expect(closed).toBe(accepted));
    const cache = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: tls.ca });
    const url = new URL(`wss://localhost:${port}/any/path?q=1`);
    const before = accepted;
    cache.spare(url, { secureContext });
    cache.spare(url, { secureContext }); // one waits already: nothing more
    expect(cache.warmCount).toBe(1);
    await vi.waitFor(() => expect(accepted).toBe(before + 1));
    await dial('localhost', { cache, secureContext });
    expect(accepted).toBe(before + 1); // the dial made no connection of its own
    expect(cache.warmCount).toBe(0);
    cache.spare(url, { secureContext });
    await vi.waitFor(() => expect(accepted).toBe(before + 2));
    const closedBefore = closed;
    cache.closeWaiting();
    expect(cache.warmCount).toBe(0);
    await vi.waitFor(() => expect(closed).toBe(closedBefore + 1));
  });

  it('a spare nobody takes is closed after its idle time, and leaves nothing behind for preconnects', async () => {
    await vi.waitFor(() => expect(closed).toBe(accepted));
    const cache = new TlsSessionCache(32, 100);
    const secureContext = createSecureContext({ ca: tls.ca });
    const url = new URL(`https://localhost:${port}/`);
    const before = accepted;
    cache.spare(url, { secureContext });
    await vi.waitFor(() => expect(accepted).toBe(before + 1));
    await vi.waitFor(() => expect(closed).toBe(before + 1)); // closed by the client, 100 ms on
    expect(cache.warmCount).toBe(0);
    // Its holder went with it: a preconnect released unused is closed at once, not kept for the spare's.
    const release = cache.preconnect(url, { secureContext });
    expect(cache.warmCount).toBe(1);
    release();
    expect(cache.warmCount).toBe(0);
  });
});
