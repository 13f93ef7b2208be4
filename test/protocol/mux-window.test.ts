import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  ERRORS,
  LIMITS,
  MUX,
  MUX_HEADER_BYTES,
  MUX_MAX_WINDOW_BYTES,
  MUX_SUBPROTOCOL,
  MUX_SUBPROTOCOLS,
  MUX_SUBPROTOCOL_WINDOWS,
  MUX_WINDOW_BYTES,
  MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES,
  SAMPLE_BACKOFF_MS,
  MuxConnection,
  WsDuplex,
  decodeMuxFrame,
  encodeAttach,
  encodeCredit,
  encodeData,
  type MuxChannel,
  type MuxFrame,
  type WindowTuner,
} from '../../protocol/index.js';
import { readToEnd, sha256, writeInPieces } from '../helpers/streams.js';
import { Queue, within } from '../helpers/queue.js';
import { whole } from '../helpers/ws-pair.js';

// Window updates on multiplexed connections (protocol/mux-window.ts, subprotocol
// devstreams.v1.mux2): a channel held back by its window grows it, up to MUX_MAX_WINDOW_BYTES and
// within the connection's budget; a paused one does not; a v1 connection keeps the fixed window;
// and each side enforces what the other may grant and send.

const MiB = 1024 * 1024;
const FRAME = LIMITS.maxDataFrameBytes;
const PIECE = 64 * 1024;
/** The payload of the tuner's pings (its pong ends a sample). */
const SAMPLE_PING = Buffer.from('devstreams-window');
/** The payload of the round-trip probe a tuner sends when its connection opens. */
const RTT_PING = Buffer.from('devstreams-rtt');

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/**
 * A TCP proxy on loopback that delays every chunk by `delayMs` each way (order kept): a link with
 * a round trip of 2 x delayMs and room for anything in flight, so a channel's window is its limit.
 */
async function delayProxy(targetPort: number, delayMs: number): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => {});
    }
    const carry = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => setTimeout(() => to.destroyed || to.write(chunk), delayMs));
      from.on('end', () => setTimeout(() => to.destroyed || to.end(), delayMs));
      from.on('close', () => setTimeout(() => to.destroy(), delayMs));
    };
    carry(client, upstream);
    carry(upstream, client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

/** A WebSocketServer on loopback that picks its subprotocol as the hub does: mux2 when offered, else mux. */
async function muxServer(): Promise<{ wss: WebSocketServer; port: number }> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(MUX_SUBPROTOCOL_WINDOWS) ? MUX_SUBPROTOCOL_WINDOWS : MUX_SUBPROTOCOL),
  });
  await once(wss, 'listening');
  cleanups.push(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  return { wss, port: (wss.address() as net.AddressInfo).port };
}

/** A server MuxConnection that accepts every ATTACH (its channel paused), and the channels it accepted. */
function serverMux(ws: WebSocket, windowUpdates?: boolean, clock?: () => number): { server: MuxConnection; attached: Queue<MuxChannel> } {
  const attached = new Queue<MuxChannel>();
  const server = new MuxConnection({
    ws,
    role: 'server',
    ...(windowUpdates !== undefined ? { windowUpdates } : {}),
    ...(clock ? { clock } : {}),
    onAttach: (channel) => {
      channel.pause();
      channel.accept();
      attached.push(channel);
    },
  });
  return { server, attached };
}

/** The tuner of a connection (private: read for the budget only). */
const tunerOf = (conn: MuxConnection): WindowTuner | null => (conn as unknown as { tuner: WindowTuner | null }).tuner;

/**
 * Two MuxConnections over a real WebSocket whose client offers `offer`, through a delay proxy
 * when `delayMs` is given; the subprotocol decides window updates unless `windowUpdates` says.
 */
async function muxLink(opts: { offer: readonly string[]; delayMs?: number; windowUpdates?: boolean }) {
  const { wss, port } = await muxServer();
  const serverSide = once(wss, 'connection');
  const dialPort = opts.delayMs ? await delayProxy(port, opts.delayMs) : port;
  const cws = new WebSocket(`ws://127.0.0.1:${dialPort}`, [...opts.offer], { perMessageDeflate: false });
  cleanups.push(() => cws.terminate());
  await within(once(cws, 'open'), 5000, 'the client WebSocket to open');
  const [sws] = (await within(serverSide, 5000, 'the server WebSocket')) as [WebSocket];
  const { server, attached } = serverMux(sws, opts.windowUpdates);
  const sent = sendSpy(cws);
  const client = new MuxConnection({ ws: cws, role: 'client', ...(opts.windowUpdates !== undefined ? { windowUpdates: opts.windowUpdates } : {}) });
  /** Attaches a channel: the client's and the server's, both paused. */
  const attach = async (name: string): Promise<{ c: MuxChannel; s: MuxChannel }> => {
    const attaching = client.attach({ streamId: name, token: `token-${name}` }, { timeoutMs: 5000 });
    const s = await attached.next(`the server's side of ${name}`);
    return { c: await within(attaching, 5000, `the attach of ${name}`), s };
  };
  return { cws, sws, client, server, attach, sent };
}

/** Counts the DATA bytes per channel that pass through `ws.send` (what a sender puts on the wire), with a hook on each. */
function sendSpy(ws: WebSocket) {
  const data = new Map<number, number>();
  const hooks: Array<(id: number) => void> = [];
  const send = ws.send.bind(ws) as (...args: unknown[]) => void;
  (ws as unknown as { send: (...args: unknown[]) => void }).send = (msg: unknown, ...rest: unknown[]) => {
    if (Buffer.isBuffer(msg) && msg[0] === MUX.DATA) {
      const id = msg.readUInt32BE(1);
      data.set(id, (data.get(id) ?? 0) + msg.length - MUX_HEADER_BYTES);
      for (const h of hooks) h(id);
    }
    send(msg, ...rest);
  };
  return { dataBytes: (id: number): number => data.get(id) ?? 0, onData: (h: (id: number) => void) => hooks.push(h) };
}

/** The CREDIT frames and sample pings a WebSocket receives. */
function creditWatch(ws: WebSocket) {
  const credits = new Map<number, number[]>();
  let samplePings = 0;
  ws.on('message', (parts: Buffer | Buffer[], isBinary: boolean) => {
    const m = whole(parts); // a MuxConnection on this WebSocket takes messages in parts
    if (!isBinary || m.length !== MUX_HEADER_BYTES + 4 || m[0] !== MUX.CREDIT) return;
    const id = m.readUInt32BE(1);
    credits.set(id, [...(credits.get(id) ?? []), m.readUInt32BE(MUX_HEADER_BYTES)]);
  });
  ws.on('ping', (data: Buffer) => {
    if (data.equals(SAMPLE_PING)) samplePings++;
  });
  return {
    of: (id: number): number[] => credits.get(id) ?? [],
    total: (id: number): number => (credits.get(id) ?? []).reduce((a, b) => a + b, 0),
    get samplePings(): number {
      return samplePings;
    },
  };
}

interface Transfer {
  bytes: number;
  digest: string;
  /** The largest receive window the receiver had. */
  maxWindow: number;
  /** The most DATA of the channel the sender had put on the wire that the receiver had not yet received. */
  maxInFlight: number;
  /** The most the CREDITs granted ever exceeded what the receiver had consumed plus what its window had grown. */
  maxOverGrant: number;
}

/**
 * Sends `payload` from `c` to `s` (resumed here) in 64 KiB messages and resolves once all of it
 * arrived, with what the wire and the windows did on the way.
 */
async function transfer(link: Awaited<ReturnType<typeof muxLink>>, ch: { c: MuxChannel; s: MuxChannel }, payload: Buffer, credits: ReturnType<typeof creditWatch>, ms: number): Promise<Transfer> {
  const { c, s } = ch;
  const hash = createHash('sha256');
  const t: Transfer = { bytes: 0, digest: '', maxWindow: s.receiveWindow, maxInFlight: 0, maxOverGrant: -Infinity };
  let consumed = 0;
  link.sent.onData((id) => {
    if (id === c.id) t.maxInFlight = Math.max(t.maxInFlight, link.sent.dataBytes(id) - s.receivedBytes);
  });
  link.cws.on('message', () => {
    t.maxOverGrant = Math.max(t.maxOverGrant, credits.total(c.id) - (consumed + s.grownBytes));
  });
  const done = new Promise<void>((resolve) => {
    s.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      hash.update(data);
      consumed += data.length;
      t.bytes += data.length;
      t.maxWindow = Math.max(t.maxWindow, s.receiveWindow);
      if (t.bytes >= payload.length) resolve();
    });
  });
  s.resume();
  c.resume();
  for (let i = 0; i < payload.length; i += PIECE) c.send(payload.subarray(i, i + PIECE), { binary: true });
  await within(done, ms, 'the transfer');
  t.digest = hash.digest('hex');
  return t;
}

/** A channel's close as [code, reason] (listening from now on). */
async function closeOf(ch: MuxChannel, ms = 5000): Promise<[number, string]> {
  const [code, reason] = (await within(once(ch, 'close'), ms, 'the channel close')) as [number, Buffer];
  return [code, reason.toString()];
}

describe('subprotocol and window updates', () => {
  it('a connection has window updates exactly when mux2 was negotiated, unless the option says otherwise', async () => {
    const both = await muxLink({ offer: MUX_SUBPROTOCOLS });
    expect(both.cws.protocol).toBe(MUX_SUBPROTOCOL_WINDOWS);
    expect([both.client.windowUpdates, both.server.windowUpdates]).toEqual([true, true]);
    expect(tunerOf(both.client)?.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
    const v1 = await muxLink({ offer: [MUX_SUBPROTOCOL] });
    expect(v1.cws.protocol).toBe(MUX_SUBPROTOCOL);
    expect([v1.client.windowUpdates, v1.server.windowUpdates]).toEqual([false, false]);
    expect(tunerOf(v1.server)).toBeNull();
    const forced = await muxLink({ offer: [MUX_SUBPROTOCOL], windowUpdates: true });
    expect([forced.client.windowUpdates, forced.server.windowUpdates]).toEqual([true, true]);
    const off = await muxLink({ offer: MUX_SUBPROTOCOLS, windowUpdates: false });
    expect([off.client.windowUpdates, off.server.windowUpdates]).toEqual([false, false]);
    expect(tunerOf(off.server)).toBeNull();
  }, 10_000);

  it('grow(): only with window updates, only while open and not paused, never past 8 MiB; the sender takes each grant', async () => {
    const v1 = await muxLink({ offer: [MUX_SUBPROTOCOL] });
    const a = await v1.attach('a');
    a.s.resume();
    expect(a.s.canGrow).toBe(true);
    expect(a.s.grow(MiB)).toBe(0); // no window updates on a v1 connection
    expect(a.s.receiveWindow).toBe(MUX_WINDOW_BYTES);
    const link = await muxLink({ offer: MUX_SUBPROTOCOLS });
    const credits = creditWatch(link.cws);
    const b = await link.attach('b');
    expect(b.s.canGrow).toBe(false); // paused
    expect(b.s.grow(MiB)).toBe(0);
    b.s.resume();
    expect(b.s.grow(0)).toBe(0);
    expect(b.s.grow(MiB)).toBe(MiB);
    expect(b.s.grow(100 * MiB)).toBe(MUX_MAX_WINDOW_BYTES - 2 * MiB);
    expect([b.s.receiveWindow, b.s.grownBytes, b.s.canGrow]).toEqual([MUX_MAX_WINDOW_BYTES, MUX_MAX_WINDOW_BYTES - MUX_WINDOW_BYTES, false]);
    expect(b.s.grow(1)).toBe(0);
    // The client's side was granted all of it and took it: it sends 8 MiB at once, none of it credited yet.
    b.c.resume();
    await link.attach('barrier'); // a round trip: the CREDITs have arrived
    expect(credits.of(b.c.id)).toEqual([MiB, MUX_MAX_WINDOW_BYTES - 2 * MiB]);
    expect(b.c.readyState).toBe(b.c.OPEN);
    b.s.pause();
    for (let i = 0; i < 10 * MiB; i += PIECE) b.c.send(Buffer.alloc(PIECE), { binary: true });
    expect(link.sent.dataBytes(b.c.id)).toBe(MUX_MAX_WINDOW_BYTES);
  }, 10_000);
});

/**
 * Each way on the delayed links below: 45 ms, a 90 ms round trip. The proxy and both ends run in
 * this test's one thread, so a link is window-bound (the growth these tests look for) only while
 * that thread carries more than a 1 MiB window per round trip: 12 MB/s at 90 ms, which a loaded CI
 * machine still does. At 15 ms each way (35 MB/s) a loaded CI run was once, it seems, CPU-bound: its
 * window grew too late to put more than the fixed window and a frame in flight.
 */
const LINK_DELAY_MS = 45;

/** `size` random bytes on one channel `name` of a fresh link offering `offer`, LINK_DELAY_MS each way; checked to arrive intact. */
async function carryOverDelayedLink(offer: readonly string[], name: string, size: number) {
  const link = await muxLink({ offer, delayMs: LINK_DELAY_MS });
  const credits = creditWatch(link.cws);
  const ch = await link.attach(name);
  const payload = randomBytes(size);
  const t = await transfer(link, ch, payload, credits, 15_000);
  expect({ bytes: t.bytes, digest: t.digest }).toEqual({ bytes: payload.length, digest: sha256(payload) });
  return { link, credits, ch, payload, t };
}

describe('window growth over a link with a 90 ms round trip', () => {
  it('mux2: a fast 32 MiB stream grows its window past 1 MiB (never past 8 MiB), puts more than a fixed window in flight, and arrives intact', async () => {
    const { link, credits, ch, payload, t } = await carryOverDelayedLink(MUX_SUBPROTOCOLS, 'fast', 32 * MiB);
    expect(link.cws.protocol).toBe(MUX_SUBPROTOCOL_WINDOWS);
    expect(credits.samplePings).toBeGreaterThan(0);
    expect(t.maxWindow).toBeGreaterThan(MUX_WINDOW_BYTES);
    expect(t.maxWindow).toBeLessThanOrEqual(MUX_MAX_WINDOW_BYTES);
    expect(ch.s.grownBytes).toBe(ch.s.receiveWindow - MUX_WINDOW_BYTES);
    // More than a fixed window allows was in flight at once (the growth took effect on the wire),
    // and never more than the largest window and the one frame a sender may start past it.
    expect(t.maxInFlight).toBeGreaterThan(MUX_WINDOW_BYTES + FRAME);
    expect(t.maxInFlight).toBeLessThanOrEqual(MUX_MAX_WINDOW_BYTES + FRAME);
    // Every grant was consumption or growth.
    expect(t.maxOverGrant).toBeLessThanOrEqual(0);
    // The sender accepted every grant: the channel is open and closes cleanly.
    expect([ch.c.readyState, ch.s.readyState]).toEqual([ch.c.OPEN, ch.s.OPEN]);
    const closed = Promise.all([closeOf(ch.c), closeOf(ch.s)]);
    ch.c.close(1000);
    expect(await closed).toEqual([
      [1000, ''],
      [1000, ''],
    ]);
    // Its growth went back to the connection's budget.
    expect(tunerOf(link.server)!.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
  }, 20_000);

  it('mux2: read through WsDuplex on both ends (as the agent, the relay and the SDK read a channel), a 24 MiB stream grows its window too and arrives intact', async () => {
    const link = await muxLink({ offer: MUX_SUBPROTOCOLS, delayMs: LINK_DELAY_MS });
    const ch = await link.attach('duplex');
    const cd = new WsDuplex(ch.c);
    const sd = new WsDuplex(ch.s);
    for (const d of [cd, sd]) d.on('error', () => {});
    let maxWindow = 0;
    ch.s.on('message', () => (maxWindow = Math.max(maxWindow, ch.s.receiveWindow)));
    ch.c.resume();
    ch.s.resume();
    const payload = randomBytes(24 * MiB);
    const got = within(readToEnd(sd), 15_000, 'the stream through WsDuplex');
    writeInPieces(cd, payload);
    expect(await got).toEqual({ bytes: payload.length, digest: sha256(payload) });
    expect(maxWindow).toBeGreaterThan(MUX_WINDOW_BYTES);
    expect(maxWindow).toBeLessThanOrEqual(MUX_MAX_WINDOW_BYTES);
  }, 20_000);

  it('v1: the same stream keeps a 1 MiB window, no sample ping is sent, no CREDIT grants more than was consumed, and it arrives intact', async () => {
    const { link, credits, ch, payload, t } = await carryOverDelayedLink([MUX_SUBPROTOCOL], 'fixed', 16 * MiB);
    expect(link.cws.protocol).toBe(MUX_SUBPROTOCOL);
    expect(t.maxWindow).toBe(MUX_WINDOW_BYTES);
    expect(ch.s.grownBytes).toBe(0);
    expect(credits.samplePings).toBe(0);
    expect(t.maxOverGrant).toBeLessThanOrEqual(0);
    expect(credits.total(ch.c.id)).toBeLessThanOrEqual(payload.length);
    expect(t.maxInFlight).toBeLessThanOrEqual(MUX_WINDOW_BYTES + FRAME);
    expect([ch.c.readyState, ch.s.readyState]).toEqual([ch.c.OPEN, ch.s.OPEN]);
  }, 20_000);

  it('mux2: a paused channel does not grow and its sender puts at most a window and one frame on the wire, while a fast one beside it grows; nothing is lost', async () => {
    const link = await muxLink({ offer: MUX_SUBPROTOCOLS, delayMs: LINK_DELAY_MS });
    const credits = creditWatch(link.cws);
    const slow = await link.attach('slow'); // slow.s stays paused
    const fast = await link.attach('fast');
    slow.c.resume();
    const slowPayload = randomBytes(6 * MiB);
    for (let i = 0; i < slowPayload.length; i += PIECE) slow.c.send(slowPayload.subarray(i, i + PIECE), { binary: true });
    const t = await transfer(link, fast, randomBytes(24 * MiB), credits, 15_000);
    expect(t.maxWindow).toBeGreaterThan(MUX_WINDOW_BYTES);
    // The paused channel got its first window (and no more), and never grew.
    expect(link.sent.dataBytes(slow.c.id)).toBeGreaterThanOrEqual(MUX_WINDOW_BYTES);
    expect(link.sent.dataBytes(slow.c.id)).toBeLessThanOrEqual(MUX_WINDOW_BYTES + FRAME);
    expect(slow.s.receiveWindow).toBe(MUX_WINDOW_BYTES);
    expect(slow.s.grownBytes).toBe(0);
    expect(credits.of(slow.c.id)).toEqual([]);
    // Resumed, it delivers everything, in order.
    const hash = createHash('sha256');
    let got = 0;
    const all = new Promise<void>((resolve) =>
      slow.s.on('message', (data: Buffer) => {
        hash.update(data);
        if ((got += data.length) === slowPayload.length) resolve();
      }),
    );
    slow.s.resume();
    await within(all, 10_000, 'the paused stream to arrive');
    expect(hash.digest('hex')).toBe(sha256(slowPayload));
  }, 20_000);

  it('mux2: several fast channels at once never grow past the connection budget together, and give it all back when they close', async () => {
    const link = await muxLink({ offer: MUX_SUBPROTOCOLS, delayMs: LINK_DELAY_MS });
    const tuner = tunerOf(link.server)!;
    const channels = await Promise.all(['a', 'b', 'c', 'd'].map((n) => link.attach(n)));
    let maxGrown = 0;
    const grew = new Set<MuxChannel>();
    let books = true; // budget left + growth handed out is the whole budget, at every step
    const check = (): void => {
      const grown = channels.reduce((sum, ch) => sum + ch.s.grownBytes, 0);
      for (const ch of channels) if (ch.s.grownBytes > 0) grew.add(ch.s);
      maxGrown = Math.max(maxGrown, grown);
      books &&= tuner.budgetLeft + grown === MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES;
    };
    for (const ch of channels) ch.s.on('message', check);
    const results = await Promise.all(channels.map((ch) => transfer(link, ch, randomBytes(16 * MiB), creditWatch(link.cws), 20_000)));
    for (const r of results) expect(r.bytes).toBe(16 * MiB);
    expect(books).toBe(true);
    expect(grew.size).toBeGreaterThanOrEqual(2); // several grew at once
    expect(maxGrown).toBeLessThanOrEqual(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
    expect(tuner.budgetLeft).toBeGreaterThanOrEqual(0);
    const closed = Promise.all(channels.flatMap((ch) => [closeOf(ch.c), closeOf(ch.s)]));
    for (const ch of channels) ch.c.close(1000);
    await closed;
    expect(link.server.channelCount).toBe(0);
    expect(tuner.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
  }, 30_000);
});

/**
 * A server MuxConnection and a raw client WebSocket that writes frames by hand and answers the
 * tuner's pings itself (autoPong off unless asked for), so that what a sample counts is up to the test.
 */
async function rawLink(offer: readonly string[], opts: { autoPong?: boolean; clock?: () => number } = {}) {
  const { wss, port } = await muxServer();
  const serverSide = once(wss, 'connection');
  const raw = new WebSocket(`ws://127.0.0.1:${port}`, [...offer], { perMessageDeflate: false, autoPong: opts.autoPong ?? false });
  cleanups.push(() => raw.terminate());
  await within(once(raw, 'open'), 5000, 'the raw WebSocket to open');
  const [sws] = (await within(serverSide, 5000, 'the server WebSocket')) as [WebSocket];
  // A clock that moves one back-off per reading: every sample takes the same time, the shortest
  // round trip, and none waits for the one before, so that what a sample counts alone decides the
  // growth (the round-trip probe goes unanswered).
  let ticks = 0;
  const { server, attached } = serverMux(sws, undefined, opts.clock ?? (() => (ticks += SAMPLE_BACKOFF_MS)));
  /** Frames other than DATA, CREDIT and ACCEPT (CLOSEs), in order. */
  const frames = new Queue<MuxFrame>();
  const accepts = new Queue<MuxFrame>();
  const data = new Map<number, number>();
  const credit = new Map<number, number>();
  const creditWaiters: Array<() => void> = [];
  raw.on('message', (parts: Buffer | Buffer[]) => {
    const m = whole(parts);
    const f = decodeMuxFrame(m);
    if (typeof f === 'string') throw new Error(`the server sent a malformed frame: ${f}`);
    if (f.type === MUX.DATA) data.set(f.id, (data.get(f.id) ?? 0) + f.data.length);
    else if (f.type === MUX.CREDIT) {
      credit.set(f.id, (credit.get(f.id) ?? 0) + f.bytes);
      for (const w of creditWaiters.splice(0)) w();
    } else if (f.type === MUX.ACCEPT) accepts.push(f);
    else frames.push(f);
  });
  const pings = new Queue<Buffer>();
  const rttPings = new Queue<Buffer>();
  raw.on('ping', (d: Buffer) => (d.equals(RTT_PING) ? rttPings : pings).push(d));
  /** ATTACH `id` by hand and wait for its ACCEPT: a round trip, so the server has handled all sent before it. */
  const attach = async (id: number): Promise<MuxChannel> => {
    raw.send(encodeAttach(id, `stream-${id}`, `token-${id}`));
    const channel = await attached.next(`the server's channel ${id}`);
    expect(await accepts.next(`the ACCEPT of ${id}`)).toEqual({ type: MUX.ACCEPT, id, streamId: '' });
    return channel;
  };
  /** DATA the raw side sent, per channel: what the server's grant must cover. */
  const sent = new Map<number, number>();
  const sendData = (id: number, bytes: number): void => {
    for (let left = bytes; left > 0; left -= PIECE) {
      const n = Math.min(PIECE, left);
      raw.send(encodeData(MUX.DATA, id, Buffer.alloc(n, id)));
      sent.set(id, (sent.get(id) ?? 0) + n);
    }
  };
  /** What the server lets the raw side send on `id` now (its grant less what was sent). */
  const allowance = (id: number): number => MUX_WINDOW_BYTES + (credit.get(id) ?? 0) - (sent.get(id) ?? 0);
  /** Sends `bytes` on `id` within the server's grant, waiting for its credits as a MuxChannel would. */
  const pump = async (id: number, bytes: number): Promise<void> => {
    for (let left = bytes; left > 0; ) {
      if (allowance(id) <= 0) {
        await within(new Promise<void>((r) => creditWaiters.push(r)), 5000, `credit for channel ${id}`);
        continue;
      }
      const n = Math.min(PIECE, left);
      sendData(id, n);
      left -= n;
    }
  };
  return {
    raw,
    server,
    frames,
    pings,
    rttPings,
    attach,
    sendData,
    pump,
    allowance,
    dataBytes: (id: number): number => data.get(id) ?? 0,
    sentBytes: (id: number): number => sent.get(id) ?? 0,
    credits: (id: number): number => credit.get(id) ?? 0,
  };
}

/** A raw link to a server with window updates, its tuner, and channel 1 attached and read as its data comes. */
async function linkWithReader() {
  const p = await rawLink(MUX_SUBPROTOCOLS);
  const ch = await p.attach(1);
  ch.resume();
  return { p, tuner: tunerOf(p.server)!, ch };
}

describe('window updates against a raw peer', () => {
  it('a paused channel that receives its whole first window at once does not grow, even when the pong counts all of it', async () => {
    const p = await rawLink(MUX_SUBPROTOCOLS, { autoPong: true });
    const ch = await p.attach(1); // paused
    p.sendData(1, MUX_WINDOW_BYTES); // 16 messages in one burst
    await p.attach(2); // the server has handled the burst (and pinged, if it samples)
    await p.attach(3); // and the raw side's automatic pong
    expect(p.credits(1)).toBe(0);
    expect(ch.receiveWindow).toBe(MUX_WINDOW_BYTES);
    expect(ch.grownBytes).toBe(0);
    expect(tunerOf(p.server)!.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
  }, 10_000);

  it('a sample ends only at a pong with its payload; a channel grows only if 2/3 of its window arrived in it, to twice that (capped at 8 MiB); the grown window is enforced: grant + one frame, not a byte more', async () => {
    const { p, tuner, ch } = await linkWithReader();
    let barrier = 100;
    /** A round trip: the server has handled everything sent before it. */
    const roundTrip = (): Promise<MuxChannel> => p.attach(barrier++);
    /** Starts a sample (a quarter window since the last), then sends `bytes` within it. */
    const sample = async (bytes: number): Promise<void> => {
      await p.pump(1, ch.receiveWindow / 4);
      expect((await p.pings.next('the sample ping')).equals(SAMPLE_PING)).toBe(true);
      await p.pump(1, bytes);
      await roundTrip();
    };
    // 640 KiB in the round trip: under 2/3 of the window (699,051 bytes), no growth.
    await sample(640 * 1024);
    p.raw.pong(SAMPLE_PING);
    await roundTrip();
    expect(ch.receiveWindow).toBe(MUX_WINDOW_BYTES);
    expect(p.credits(1)).toBeLessThanOrEqual(p.sentBytes(1)); // consumption only
    // 704 KiB: over 2/3 of it, the window grows to twice that.
    await sample(704 * 1024);
    p.raw.pong(SAMPLE_PING);
    await roundTrip();
    expect(ch.receiveWindow).toBe(2 * 704 * 1024);
    expect(tuner.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES - ch.grownBytes);
    // 5 MiB: twice that is past the cap. Pongs with another payload (a heartbeat's) end no sample.
    await sample(5 * MiB);
    p.raw.pong(Buffer.from('heartbeat'));
    p.raw.pong();
    await roundTrip();
    expect(ch.receiveWindow).toBe(2 * 704 * 1024);
    expect(p.credits(1) - ch.grownBytes).toBeLessThanOrEqual(p.sentBytes(1));
    const creditsBefore = p.credits(1);
    p.raw.pong(SAMPLE_PING);
    await roundTrip();
    expect(ch.receiveWindow).toBe(MUX_MAX_WINDOW_BYTES);
    expect(ch.grownBytes).toBe(MUX_MAX_WINDOW_BYTES - MUX_WINDOW_BYTES);
    expect(p.credits(1) - creditsBefore).toBeGreaterThanOrEqual(MUX_MAX_WINDOW_BYTES - 2 * 704 * 1024); // the growth was granted
    expect(ch.canGrow).toBe(false);
    expect(tuner.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES - (MUX_MAX_WINDOW_BYTES - MUX_WINDOW_BYTES));
    // Paused now: the raw side may send what it was granted and one frame more.
    ch.pause();
    await roundTrip(); // any credit for bytes consumed before the pause has arrived
    const grant = p.allowance(1);
    expect(grant).toBeGreaterThan(MUX_WINDOW_BYTES + FRAME); // only the grown window allows this much
    const closed = closeOf(ch);
    let failedEarly = false;
    ch.once('close', () => (failedEarly = true));
    p.sendData(1, grant + FRAME);
    await roundTrip();
    expect(failedEarly).toBe(false);
    expect(ch.readyState).toBe(ch.OPEN);
    p.sendData(1, 1);
    expect(await p.frames.next('the CLOSE of channel 1')).toEqual({ type: MUX.CLOSE, id: 1, code: ERRORS.BAD_REQUEST.ws, reason: expect.any(String) });
    expect((await closed)[0]).toBe(ERRORS.BAD_REQUEST.ws);
    expect(p.server.usable).toBe(true);
    // Its growth went back to the budget.
    expect(tunerOf(p.server)!.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
  }, 15_000);

  it('one sample grows its channels within the connection budget: 8 MiB, 8 MiB, then what is left; a later channel does not grow; all of it is given back', async () => {
    const p = await rawLink(MUX_SUBPROTOCOLS);
    const tuner = tunerOf(p.server)!;
    const chs = [await p.attach(1), await p.attach(2), await p.attach(3)];
    for (const ch of chs) ch.resume();
    await p.pump(1, MUX_WINDOW_BYTES / 4);
    expect((await p.pings.next('the sample ping')).equals(SAMPLE_PING)).toBe(true);
    await Promise.all([1, 2, 3].map((id) => p.pump(id, 5 * MiB)));
    await p.attach(10); // all of it has arrived
    p.raw.pong(SAMPLE_PING);
    await p.attach(11);
    const grown = chs.map((ch) => ch.grownBytes);
    expect(grown).toEqual([7 * MiB, 7 * MiB, MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES - 14 * MiB]);
    expect(chs.map((ch) => ch.receiveWindow)).toEqual([8 * MiB, 8 * MiB, MUX_WINDOW_BYTES + 2 * MiB]);
    expect(tuner.budgetLeft).toBe(0);
    // A fourth channel, as fast, gets no growth: the budget is spent (it is not even sampled).
    const four = await p.attach(12);
    four.resume();
    const pingsBefore = p.pings.length;
    await p.pump(12, 4 * MiB);
    await p.attach(13);
    expect(p.pings.length).toBe(pingsBefore);
    expect(four.receiveWindow).toBe(MUX_WINDOW_BYTES);
    // Each channel's growth goes back as it ends (terminate(): the raw side answers no CLOSE).
    chs[0]!.terminate();
    expect(tuner.budgetLeft).toBe(7 * MiB);
    // Given back, it is there for a channel that needs it: the fourth grows at the next sample.
    await p.pump(12, PIECE); // it is past a quarter window since it was last sampled (never): this starts a sample
    expect((await p.pings.next('a sample ping for the fourth channel')).equals(SAMPLE_PING)).toBe(true);
    await p.pump(12, 2 * MiB);
    await p.attach(14);
    p.raw.pong(SAMPLE_PING);
    await p.attach(15);
    expect(four.receiveWindow).toBe(4 * MiB);
    expect(tuner.budgetLeft).toBe(7 * MiB - 3 * MiB);
    for (const ch of [chs[1]!, chs[2]!, four]) ch.terminate();
    expect(tuner.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
  }, 20_000);

  it('a sample whose round trip was mostly queue (ten times the idle round trip) grows nothing; one at the idle round trip grows the window', async () => {
    let now = 0;
    const p = await rawLink(MUX_SUBPROTOCOLS, { clock: () => now });
    // The probe the connection sent when it opened, answered at once: the link's round trip is 1.
    expect((await p.rttPings.next('the round-trip probe')).equals(RTT_PING)).toBe(true);
    now = 1;
    p.raw.pong(RTT_PING);
    const ch = await p.attach(1); // a round trip: the probe's pong has been handled
    ch.resume();
    const sampleOver = async (rtt: number): Promise<void> => {
      const start = now;
      await p.pump(1, ch.receiveWindow / 4);
      expect((await p.pings.next('the sample ping')).equals(SAMPLE_PING)).toBe(true);
      await p.pump(1, 900 * 1024); // over 2/3 of the window
      await p.attach(100 + start); // all of it has arrived
      now = start + rtt;
      p.raw.pong(SAMPLE_PING);
      await p.attach(200 + start);
    };
    await sampleOver(10); // 2 x 900 KiB x 1/10 is under the window
    expect(ch.receiveWindow).toBe(MUX_WINDOW_BYTES);
    // A sample that grew nothing holds the next off for SAMPLE_BACKOFF_MS: a quarter window more
    // sends no ping until the clock has moved past it.
    const pingsBefore = p.pings.length;
    await p.pump(1, ch.receiveWindow / 4);
    await p.attach(99);
    expect(p.pings.length).toBe(pingsBefore);
    now += SAMPLE_BACKOFF_MS;
    // Past it, the next piece starts a sample (a quarter window has come since the last); at the
    // idle round trip, 900 KiB in it grows the window to twice that.
    await p.pump(1, PIECE);
    expect((await p.pings.next('the sample ping after the back-off')).equals(SAMPLE_PING)).toBe(true);
    await p.pump(1, 900 * 1024);
    await p.attach(300);
    now += 1;
    p.raw.pong(SAMPLE_PING);
    await p.attach(301);
    expect(ch.receiveWindow).toBe(2 * 900 * 1024);
  }, 10_000);

  it('a connection lost mid-growth gives every channel back; the budget is whole again', async () => {
    const { p, tuner, ch } = await linkWithReader();
    await p.pump(1, MUX_WINDOW_BYTES / 4);
    await p.pings.next('the sample ping');
    await p.pump(1, 2 * MiB);
    p.raw.pong(SAMPLE_PING);
    await p.attach(2);
    expect(ch.grownBytes).toBeGreaterThan(0);
    expect(tuner.budgetLeft).toBeLessThan(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
    const closed = closeOf(ch);
    p.raw.terminate();
    expect((await closed)[0]).toBe(1006);
    expect(tuner.budgetLeft).toBe(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES);
  }, 10_000);
});

describe('what a peer may grant', () => {
  it.each([
    ['mux2', MUX_SUBPROTOCOLS, true],
    ['v1', [MUX_SUBPROTOCOL], false],
  ] as const)('%s: grants up to an 8 MiB allowance are taken only with window updates; a byte past it (on v1: past what was sent) ends only that channel with BAD_REQUEST', async (_what, offer, windowUpdates) => {
    const p = await rawLink(offer);
    expect(p.server.windowUpdates).toBe(windowUpdates);
    const ch = await p.attach(1);
    ch.resume();
    const closed = closeOf(ch);
    // A grant before any data: a window update, 1 MiB -> 8 MiB.
    p.raw.send(encodeCredit(1, MUX_MAX_WINDOW_BYTES - MUX_WINDOW_BYTES));
    await p.attach(2);
    if (!windowUpdates) {
      // A v1 peer may only give back what it took: this grant is for bytes never sent.
      expect(await p.frames.next('the CLOSE of channel 1')).toEqual({ type: MUX.CLOSE, id: 1, code: ERRORS.BAD_REQUEST.ws, reason: expect.any(String) });
      expect((await closed)[0]).toBe(ERRORS.BAD_REQUEST.ws);
      expect(p.server.usable).toBe(true);
      return;
    }
    expect(ch.readyState).toBe(ch.OPEN);
    // The server's side sends 10 MiB: 8 MiB of it goes out, the rest waits for credit.
    const payload = Buffer.alloc(10 * MiB, 7);
    for (let i = 0; i < payload.length; i += PIECE) ch.send(payload.subarray(i, i + PIECE), { binary: true });
    await p.attach(3);
    expect(p.dataBytes(1)).toBe(MUX_MAX_WINDOW_BYTES);
    expect(ch.bufferedAmount).toBeGreaterThan(0);
    // A full 8 MiB grant with nothing left is taken, and so is one filling the allowance to 8 MiB again.
    p.raw.send(encodeCredit(1, MUX_MAX_WINDOW_BYTES));
    await p.attach(4);
    expect(p.dataBytes(1)).toBe(payload.length);
    p.raw.send(encodeCredit(1, payload.length - MUX_MAX_WINDOW_BYTES));
    await p.attach(5);
    expect(ch.readyState).toBe(ch.OPEN);
    // One byte more ends that channel with BAD_REQUEST; the connection and its other channels go on.
    p.raw.send(encodeCredit(1, 1));
    expect(await p.frames.next('the CLOSE of channel 1')).toEqual({ type: MUX.CLOSE, id: 1, code: ERRORS.BAD_REQUEST.ws, reason: expect.any(String) });
    expect((await closed)[0]).toBe(ERRORS.BAD_REQUEST.ws);
    expect(p.server.usable).toBe(true);
    const two = await p.attach(6);
    expect(two.readyState).toBe(two.OPEN);
  }, 15_000);

  it('mux2: a raw peer that sends more DATA than the window and one frame gets that channel ended with BAD_REQUEST, and only that one', async () => {
    const p = await rawLink(MUX_SUBPROTOCOLS);
    const ch = await p.attach(1); // paused: never credits; no pong: never grows
    const other = await p.attach(2);
    const closed = closeOf(ch);
    p.sendData(1, MUX_WINDOW_BYTES + FRAME);
    await p.attach(3);
    expect(ch.readyState).toBe(ch.OPEN);
    expect(ch.receiveWindow).toBe(MUX_WINDOW_BYTES);
    p.sendData(1, 1);
    expect(await p.frames.next('the CLOSE of channel 1')).toEqual({ type: MUX.CLOSE, id: 1, code: ERRORS.BAD_REQUEST.ws, reason: expect.any(String) });
    expect((await closed)[0]).toBe(ERRORS.BAD_REQUEST.ws);
    expect(other.readyState).toBe(other.OPEN);
    expect(p.server.usable).toBe(true);
  }, 10_000);
});
