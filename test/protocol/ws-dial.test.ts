import https from 'node:https';
import net from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { createSecureContext } from 'node:tls';
import { RELAY_MIN_TLS_VERSION, dialWs } from '../../protocol/ws-dial.js';
import { TlsSessionCache } from '../../protocol/tls-sessions.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';

// The one WebSocket dial to a hub's relay (protocol/ws-dial.ts), shared by the agent and the
// service side, for a stream's own WebSocket and the multiplexed connection: what each way of
// failing comes back as, and the socket handed over as it opens, before anything it receives can
// be lost.

let tls: TestTls;
/** TLS connections the test servers have accepted. */
let accepted = 0;
const cleanups: Array<() => Promise<void> | void> = [];
beforeAll(() => {
  tls = makeTestTls();
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A TLS server on 127.0.0.1: port 0, read back. `upgrade` answers each upgrade request. */
async function server(upgrade: (req: import('node:http').IncomingMessage, socket: import('node:stream').Duplex, head: Buffer, wss: WebSocketServer) => void): Promise<URL> {
  const srv = https.createServer({ cert: tls.cert, key: tls.key });
  srv.on('secureConnection', () => accepted++);
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => (offered.has('p2') ? 'p2' : offered.has('p1') ? 'p1' : false) });
  srv.on('upgrade', (req, socket, head) => upgrade(req, socket, head, wss));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  cleanups.push(() => {
    for (const c of wss.clients) c.terminate();
    srv.closeAllConnections();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  return new URL(`wss://127.0.0.1:${(srv.address() as AddressInfo).port}/x`);
}

const dial = (url: URL, subprotocols: string | readonly string[], extra: { signal?: AbortSignal } = {}) =>
  dialWs({ url, subprotocols, token: 'tok', timeoutMs: 5000, ca: tls.ca, ...extra }, (ws: WebSocket) => {
    const got: Buffer[] = [];
    ws.on('message', (m: Buffer) => got.push(m)); // attached as it opens: a frame right behind the upgrade finds it
    return { ws, got };
  });

describe('dialWs', () => {
  it('hands the socket over as it opens, with the subprotocol the server picked; a frame the server sends at once arrives through what take attached', async () => {
    const url = await server((req, socket, head, wss) => wss.handleUpgrade(req, socket, head, (ws) => ws.send('first')));
    const r = await dial(url, ['p2', 'p1']);
    if (!('taken' in r)) throw new Error(`no socket: ${JSON.stringify(r.failure)}`);
    cleanups.push(() => r.taken.ws.terminate());
    expect(r.taken.ws.protocol).toBe('p2');
    if (r.taken.got.length === 0) await once(r.taken.ws, 'message');
    expect(r.taken.got.map(String)).toEqual(['first']);
  });

  it('a refusal comes back with its status, content type and body', async () => {
    const url = await server((_req, socket) => {
      const body = JSON.stringify({ error: { code: 'VERSION_MISMATCH', status: 426, reason: 'no' } });
      socket.end(`HTTP/1.1 426 Upgrade Required\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
    const r = await dial(url, 'p1');
    if (!('failure' in r) || r.failure.kind !== 'refused') throw new Error(`expected a refusal: ${JSON.stringify(r)}`);
    expect(r.failure.status).toBe(426);
    expect(r.failure.contentType).toBe('application/json');
    expect(JSON.parse(r.failure.body.toString()).error.code).toBe('VERSION_MISMATCH');
  });

  it('a server that accepts without one of the offered subprotocols fails the handshake (unreachable), and its socket is closed', async () => {
    let serverSide: WebSocket | undefined;
    const url = await server((req, socket, head) => {
      const plain = new WebSocketServer({ noServer: true, handleProtocols: () => false });
      plain.handleUpgrade(req, socket, head, (ws) => (serverSide = ws));
    });
    const r = await dial(url, 'p1');
    expect('failure' in r && r.failure.kind).toBe('unreachable');
    if (serverSide && serverSide.readyState !== serverSide.CLOSED) await once(serverSide, 'close');
  });

  it('a port nothing listens on is unreachable; an aborted dial is aborted', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await dial(new URL(`wss://127.0.0.1:${port}/x`), 'p1');
    expect('failure' in r && r.failure.kind).toBe('unreachable');
    expect('failure' in r && r.failure.kind === 'unreachable' && (r.failure.err as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');

    const url = await server(() => {}); // never answers the upgrade
    const ac = new AbortController();
    const dialing = dial(url, 'p1', { signal: ac.signal });
    ac.abort(new Error('stop'));
    const a = await dialing;
    expect('failure' in a && a.failure.kind).toBe('aborted');
  });

  it('a refusal body that is too long or never ends is read as empty, and the dial still ends', async () => {
    const long = await server((_req, socket) => {
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n${'x'.repeat(20000)}`);
    });
    const a = await dial(long, 'p1');
    if (!('failure' in a) || a.failure.kind !== 'refused') throw new Error(`expected a refusal: ${JSON.stringify(a)}`);
    expect(a.failure.status).toBe(403);
    expect(a.failure.body.length).toBe(0);

    // Headers, then a body that stops half-way: the dial gives up on it (2 s), not on the handshake deadline.
    const stalled = await server((_req, socket) => {
      socket.write('HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"error":');
    });
    const started = Date.now();
    const b = await dialWs({ url: stalled, subprotocols: 'p1', token: 'tok', timeoutMs: 60_000, ca: tls.ca }, (ws) => ws);
    if (!('failure' in b) || b.failure.kind !== 'refused') throw new Error(`expected a refusal: ${JSON.stringify(b)}`);
    expect(b.failure.status).toBe(503);
    expect(b.failure.body.length).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it("without one, a dial takes the connection opened ahead for the same context: its TLS version matches the dial's", async () => {
    const url = await server((req, socket, head, wss) => wss.handleUpgrade(req, socket, head, () => {}));
    const sessions = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: tls.ca });
    const before = accepted;
    const release = sessions.preconnect(url, { secureContext, minVersion: RELAY_MIN_TLS_VERSION });
    cleanups.push(release);
    await vi.waitFor(() => expect(accepted).toBe(before + 1)); // its handshake done before the dial comes
    const r = await dialWs({ url, subprotocols: 'p1', token: 'tok', timeoutMs: 5000, secureContext, sessions }, (ws) => ws);
    if (!('taken' in r)) throw new Error(`no socket: ${JSON.stringify(r.failure)}`);
    cleanups.push(() => r.taken.terminate());
    expect(accepted).toBe(before + 1); // no connection of its own
    expect(sessions.warmCount).toBe(0);
  });

  it("with an http.Agent (the agent's CONNECT proxy) the connection is the agent's, never one opened ahead", async () => {
    const url = await server((req, socket, head, wss) => wss.handleUpgrade(req, socket, head, () => {}));
    const sessions = new TlsSessionCache();
    const secureContext = createSecureContext({ ca: tls.ca });
    const release = sessions.preconnect(url, { secureContext, minVersion: RELAY_MIN_TLS_VERSION });
    cleanups.push(release);
    const agent = new https.Agent({ ca: tls.ca });
    let made = 0;
    const create = agent.createConnection.bind(agent);
    agent.createConnection = ((...args: Parameters<typeof create>) => {
      made++;
      return create(...args);
    }) as typeof agent.createConnection;
    const r = await dialWs({ url, subprotocols: 'p1', token: 'tok', timeoutMs: 5000, secureContext, sessions, agent }, (ws) => ws);
    if (!('taken' in r)) throw new Error(`no socket: ${JSON.stringify(r.failure)}`);
    cleanups.push(() => r.taken.terminate());
    expect(made).toBe(1);
  });
});
