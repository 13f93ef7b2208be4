import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ERRORS, MuxConnection, silentLogger } from '../../protocol/index.js';
import { RelayMuxPool } from '../../agent/relay-mux-pool.js';
import { refusalOf } from '../helpers/streams.js';

/**
 * The agent's multiplexed connections (agent/relay-mux-pool.ts) against a real WebSocket server
 * that plays the relay: one connection per node, a new one after a loss, idle close, and the
 * fallback (null) after a refusal or a failure, remembered for a while.
 */

const STREAM = 'S'.repeat(22);

interface FakeRelay {
  url: string;
  /** Connections accepted so far. */
  connections: WebSocket[];
  /** Upgrades the relay answered with a refusal (when `refuseWith` is set). */
  refusals: number;
  refuseWith: number | null;
  close(): Promise<void>;
}

async function fakeRelay(onAttach: (token: string) => number | null = () => null): Promise<FakeRelay> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const relay: FakeRelay = {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/api/v1/relay/device`,
    connections: [],
    refusals: 0,
    refuseWith: null,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
  wss.on('headers', () => {});
  wss.options.verifyClient = (_info, cb) => {
    if (relay.refuseWith === null) return cb(true);
    relay.refusals++;
    cb(false, relay.refuseWith);
  };
  wss.on('connection', (ws) => {
    relay.connections.push(ws);
    // null: accept; a number: refuse with that close code.
    new MuxConnection({ ws, role: 'server', onAttach: (ch, req) => ((code) => (code === null ? ch.accept(req.streamId) : ch.refuse(code, 'no')))(onAttach(req.token)) });
  });
  return relay;
}

function dialer(): (url: string) => Promise<WebSocket> {
  return (url) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => {
        ws.pause();
        resolve(ws);
      });
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('RelayMuxPool', () => {
  it('carries the streams to one node on one connection, and opens a new one after it is lost', async () => {
    const relay = await fakeRelay();
    cleanups.push(() => relay.close());
    const pool = new RelayMuxPool({ dial: dialer(), log: silentLogger });
    cleanups.push(() => pool.stop());
    const a = await pool.attach(relay.url, STREAM, 'token-a', { timeoutMs: 5000 });
    const b = await pool.attach(relay.url, STREAM, 'token-b', { timeoutMs: 5000 });
    expect(a && b).toBeTruthy();
    expect(relay.connections).toHaveLength(1);
    expect(pool.hasConnection(relay.url)).toBe(true);
    const closed = once(a!, 'close');
    relay.connections[0]!.terminate();
    expect((await closed)[0]).toBe(1006);
    const c = await pool.attach(relay.url, STREAM, 'token-c', { timeoutMs: 5000 });
    expect(c).toBeTruthy();
    expect(relay.connections).toHaveLength(2);
  });

  it('closes a connection that has carried no stream for idleMs, and says so through onClosed', async () => {
    const relay = await fakeRelay();
    cleanups.push(() => relay.close());
    let closedCalls = 0;
    let onClosed!: () => void;
    const closedSaid = new Promise<void>((r) => (onClosed = r));
    const pool = new RelayMuxPool({ dial: dialer(), idleMs: 50, log: silentLogger, onClosed: () => (closedCalls++, onClosed()) });
    cleanups.push(() => pool.stop());
    const ch = await pool.attach(relay.url, STREAM, 'token', { timeoutMs: 5000 });
    const serverSide = relay.connections[0]!;
    const gone = once(serverSide, 'close');
    ch!.terminate();
    expect(closedCalls).toBe(0); // the connection outlives its stream
    const [code] = await gone;
    expect(code).toBe(1000);
    await closedSaid; // the agent's idle reclaimer starts its wait again here (agent/agent.ts)
    expect(closedCalls).toBe(1);
    expect(pool.hasConnection(relay.url)).toBe(false);
  });

  it('passes a refused attach on as its error code, and keeps the connection for the next stream', async () => {
    const relay = await fakeRelay((token) => (token === 'used' ? ERRORS.TOKEN_USED.ws : null));
    cleanups.push(() => relay.close());
    const pool = new RelayMuxPool({ dial: dialer(), log: silentLogger });
    cleanups.push(() => pool.stop());
    const err = await refusalOf(pool.attach(relay.url, STREAM, 'used', { timeoutMs: 5000 }));
    expect(err.code).toBe('TOKEN_USED');
    expect(await pool.attach(relay.url, STREAM, 'fresh', { timeoutMs: 5000 })).toBeTruthy();
    expect(relay.connections).toHaveLength(1);
  });

  it('after a refused connection, answers null (a WebSocket per stream) without asking again until refusedRetryMs', async () => {
    const relay = await fakeRelay();
    cleanups.push(() => relay.close());
    relay.refuseWith = 404;
    let now = 0;
    const pool = new RelayMuxPool({ dial: dialer(), refusedRetryMs: 60_000, log: silentLogger });
    cleanups.push(() => pool.stop());
    const realNow = Date.now;
    Date.now = () => realNow() + now;
    cleanups.push(() => void (Date.now = realNow));
    expect(await pool.attach(relay.url, STREAM, 't1', { timeoutMs: 5000 })).toBeNull();
    expect(await pool.attach(relay.url, STREAM, 't2', { timeoutMs: 5000 })).toBeNull();
    expect(relay.refusals).toBe(1);
    relay.refuseWith = null;
    now = 61_000;
    expect(await pool.attach(relay.url, STREAM, 't3', { timeoutMs: 5000 })).toBeTruthy();
    expect(relay.connections).toHaveLength(1);
  });

  it('after a failed connection, answers null until failedRetryMs, then tries again', async () => {
    const relay = await fakeRelay();
    const url = relay.url;
    await relay.close(); // nothing listens there now
    let now = 0;
    const realNow = Date.now;
    Date.now = () => realNow() + now;
    cleanups.push(() => void (Date.now = realNow));
    let dials = 0;
    const dial = dialer();
    const pool = new RelayMuxPool({ dial: (u) => (dials++, dial(u)), failedRetryMs: 5_000, log: silentLogger });
    cleanups.push(() => pool.stop());
    expect(await pool.attach(url, STREAM, 't1', { timeoutMs: 5000 })).toBeNull();
    expect(await pool.attach(url, STREAM, 't2', { timeoutMs: 5000 })).toBeNull();
    expect(dials).toBe(1);
    now = 6_000;
    expect(await pool.attach(url, STREAM, 't3', { timeoutMs: 5000 })).toBeNull();
    expect(dials).toBe(2);
  });

  it('streams asked for while the connection is being opened share it', async () => {
    const relay = await fakeRelay();
    cleanups.push(() => relay.close());
    const pool = new RelayMuxPool({ dial: dialer(), log: silentLogger });
    cleanups.push(() => pool.stop());
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.attach(relay.url, STREAM, `t${i}`, { timeoutMs: 5000 })));
    expect(got.every((c) => c !== null)).toBe(true);
    expect(relay.connections).toHaveLength(1);
  });

  it('after stop(), closes its connections and answers null', async () => {
    const relay = await fakeRelay();
    cleanups.push(() => relay.close());
    const pool = new RelayMuxPool({ dial: dialer(), log: silentLogger });
    await pool.attach(relay.url, STREAM, 't', { timeoutMs: 5000 });
    const gone = once(relay.connections[0]!, 'close');
    pool.stop();
    expect((await gone)[0]).toBe(1001);
    expect(await pool.attach(relay.url, STREAM, 't2', { timeoutMs: 5000 })).toBeNull();
  });
});
