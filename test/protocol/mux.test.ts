import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import {
  DevstreamsError,
  ERRORS,
  LIMITS,
  MUX,
  MUX_HEADER_BYTES,
  MUX_WINDOW_BYTES,
  MuxConnection,
  WsDuplex,
  decodeMuxFrame,
  encodeAccept,
  encodeAttach,
  encodeClose,
  encodeCredit,
  encodeData,
  encodeOpen,
  muxDeviceUrl,
  type MuxAttachRequest,
  type MuxChannel,
  type MuxFrame,
} from '../../protocol/index.js';
import { readToEnd, refusalOf, sha256, writeInPieces } from '../helpers/streams.js';
import { Queue } from '../helpers/queue.js';
import { closePairs, pair, whole } from '../helpers/ws-pair.js';

const MiB = 1024 * 1024;

afterEach(async () => {
  vi.useRealTimers();
  await closePairs();
});

type Attached = { channel: MuxChannel; request: MuxAttachRequest };
/** What the server does with an ATTACH: default pause (so nothing is emitted before the test listens) and accept. */
type Decide = (channel: MuxChannel, request: MuxAttachRequest) => void;
const acceptPaused: Decide = (channel) => {
  channel.pause();
  channel.accept();
};

/** A WebSocket on loopback (test/helpers/ws-pair.ts) whose server side gets a server MuxConnection. */
type ServerOpts = { maxChannels?: number; decide?: Decide; onOpen?: (channel: MuxChannel, body: unknown) => void };

async function wsPair(serverOpts: ServerOpts) {
  const { cws, sws } = await pair();
  const attaches = new Queue<Attached>();
  const decide = serverOpts.decide ?? acceptPaused;
  const server = new MuxConnection({
    ws: sws,
    role: 'server',
    ...(serverOpts.maxChannels !== undefined ? { maxChannels: serverOpts.maxChannels } : {}),
    ...(serverOpts.onOpen ? { onOpen: serverOpts.onOpen } : {}),
    onAttach: (channel, request) => {
      decide(channel, request);
      attaches.push({ channel, request });
    },
  });
  return { cws, sws, server, attaches };
}

/** A MuxConnection on each end of a real WebSocket. */
async function muxPair(serverOpts: ServerOpts = {}) {
  const p = await wsPair(serverOpts);
  const client = new MuxConnection({ ws: p.cws, role: 'client' });
  return { ...p, client };
}
type MuxPair = Awaited<ReturnType<typeof muxPair>>;

/** Attaches one channel (accepted by the default decision): the client's (paused) and the server's (paused). */
async function attachPair(p: MuxPair, streamId: string): Promise<{ c: MuxChannel; s: MuxChannel }> {
  const attaching = p.client.attach({ streamId, token: `token-${streamId}` }, { timeoutMs: 5_000 });
  const { channel: s, request } = await p.attaches.next();
  expect(request).toEqual({ streamId, token: `token-${streamId}` });
  const c = await attaching;
  return { c, s };
}

/** A WsDuplex on a channel. Tests that expect an error wait for it (readToEnd rejects on one); the
 * rest must not die of the 1006 a stream left open gets at cleanup. */
function duplexOf(ch: MuxChannel): WsDuplex {
  const d = new WsDuplex(ch);
  d.on('error', () => {});
  return d;
}

/** The next 'close' of a channel as [code, reason]. */
async function closeOf(ch: MuxChannel): Promise<[number, string]> {
  const [code, reason] = (await once(ch, 'close')) as [number, Buffer];
  return [code, reason.toString()];
}

/** Messages a channel emits, in order. */
function collect(ch: MuxChannel): Array<{ data: Buffer; isBinary: boolean }> {
  const got: Array<{ data: Buffer; isBinary: boolean }> = [];
  ch.on('message', (data: Buffer, isBinary: boolean) => got.push({ data, isBinary }));
  return got;
}

/** Resolves once `ch` has emitted `bytes` bytes of binary messages. */
function binaryBytes(ch: MuxChannel, bytes: number): Promise<void> {
  let n = 0;
  return new Promise((resolve) => {
    const on = (data: Buffer, isBinary: boolean): void => {
      if (isBinary) n += data.length;
      if (n >= bytes) {
        ch.off('message', on);
        resolve();
      }
    };
    ch.on('message', on);
  });
}

/** Watches the frames one end of a WebSocket receives: bytes of DATA and frame types per channel id. */
function wireWatch(ws: WebSocket) {
  const data = new Map<number, number>();
  const frames: Array<{ type: number; id: number; bytes: number }> = [];
  const waiters: Array<{ pred: () => boolean; resolve: () => void }> = [];
  ws.on('message', (parts: Buffer | Buffer[], isBinary: boolean) => {
    const m = whole(parts); // a MuxConnection on this WebSocket takes messages in parts
    if (!isBinary || m.length < MUX_HEADER_BYTES) return;
    const type = m[0]!;
    const id = m.readUInt32BE(1);
    const bytes = type === MUX.CREDIT ? m.readUInt32BE(MUX_HEADER_BYTES) : m.length - MUX_HEADER_BYTES;
    frames.push({ type, id, bytes });
    if (type === MUX.DATA) data.set(id, (data.get(id) ?? 0) + bytes);
    for (const w of waiters.splice(0)) {
      if (w.pred()) w.resolve();
      else waiters.push(w);
    }
  });
  return {
    frames,
    dataBytes: (id: number): number => data.get(id) ?? 0,
    /** Resolves once `pred` holds after some message (checked now too). */
    until: (pred: () => boolean): Promise<void> =>
      pred() ? Promise.resolve() : new Promise((resolve) => waiters.push({ pred, resolve })),
  };
}

/** A server MuxConnection and a raw client WebSocket that writes frames by hand. */
async function rawPair(serverOpts: ServerOpts = {}) {
  const p = await wsPair(serverOpts);
  const frames = new Queue<MuxFrame>();
  p.cws.on('message', (parts: Buffer | Buffer[]) => {
    const m = whole(parts);
    const f = decodeMuxFrame(m);
    if (typeof f === 'string') throw new Error(`the server sent a malformed frame: ${f}`);
    frames.push(f);
  });
  const raw = p.cws;
  /** ATTACH `id` by hand and wait for its ACCEPT; the server's channel is paused. */
  const attach = async (id: number): Promise<MuxChannel> => {
    raw.send(encodeAttach(id, `stream-${id}`, `token-${id}`));
    const { channel } = await p.attaches.next();
    expect(await frames.next()).toEqual({ type: MUX.ACCEPT, id, streamId: '' });
    return channel;
  };
  return { ...p, raw, frames, attach };
}

describe('mux frame codec', () => {
  it('round-trips every frame type', () => {
    expect(decodeMuxFrame(encodeAttach(7, 'stream-1', 'tok'))).toEqual({ type: MUX.ATTACH, id: 7, streamId: 'stream-1', token: 'tok' });
    expect(decodeMuxFrame(encodeAccept(0xffff_ffff))).toEqual({ type: MUX.ACCEPT, id: 0xffff_ffff, streamId: '' });
    expect(decodeMuxFrame(encodeAccept(2, 'Ab-_09'.repeat(10) + 'abcd'))).toEqual({ type: MUX.ACCEPT, id: 2, streamId: 'Ab-_09'.repeat(10) + 'abcd' });
    expect(decodeMuxFrame(encodeOpen(8, { device: 'dev-1', service: 'ssh', timeoutMs: 5000 }))).toEqual({
      type: MUX.OPEN,
      id: 8,
      body: { device: 'dev-1', service: 'ssh', timeoutMs: 5000 },
    });
    const bytes = randomBytes(1000);
    const data = decodeMuxFrame(encodeData(MUX.DATA, 3, bytes)) as Extract<MuxFrame, { type: 3 }>;
    expect(data.type).toBe(MUX.DATA);
    expect(data.id).toBe(3);
    expect(Buffer.compare(data.data, bytes)).toBe(0);
    const empty = decodeMuxFrame(encodeData(MUX.DATA, 3, Buffer.alloc(0))) as Extract<MuxFrame, { type: 3 }>;
    expect(empty.data.length).toBe(0);
    const text = decodeMuxFrame(encodeData(MUX.TEXT, 4, Buffer.from('{"type":"eof"}'))) as Extract<MuxFrame, { type: 4 }>;
    expect([text.type, text.id, text.data.toString()]).toEqual([MUX.TEXT, 4, '{"type":"eof"}']);
    expect(decodeMuxFrame(encodeClose(5, 4403, 'why'))).toEqual({ type: MUX.CLOSE, id: 5, code: 4403, reason: 'why' });
    expect(decodeMuxFrame(encodeClose(5, 1000, ''))).toEqual({ type: MUX.CLOSE, id: 5, code: 1000, reason: '' });
    expect(decodeMuxFrame(encodeCredit(6, 0xffff_ffff))).toEqual({ type: MUX.CREDIT, id: 6, bytes: 0xffff_ffff });
    // The largest frames allowed decode.
    expect(typeof decodeMuxFrame(encodeData(MUX.DATA, 1, Buffer.alloc(LIMITS.maxDataFrameBytes)))).toBe('object');
    expect(typeof decodeMuxFrame(encodeData(MUX.TEXT, 1, Buffer.alloc(LIMITS.maxControlFrameBytes)))).toBe('object');
  });

  it('truncates a long close reason to 123 bytes of valid UTF-8', () => {
    const f = decodeMuxFrame(encodeClose(1, 4400, 'é'.repeat(200)));
    expect(typeof f).toBe('object');
    const reason = (f as Extract<MuxFrame, { type: 5 }>).reason;
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason).toBe('é'.repeat(61));
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['shorter than its header', Buffer.from([MUX.DATA, 0, 0, 1])],
    ['an unknown type', Buffer.from([0, 0, 0, 0, 1])],
    ['another unknown type', Buffer.from([8, 0, 0, 0, 1, 1, 2])],
    ['type 255', Buffer.from([255, 0, 0, 0, 1])],
    ['DATA over the limit', encodeData(MUX.DATA, 1, Buffer.alloc(LIMITS.maxDataFrameBytes + 1))],
    ['TEXT over the limit', encodeData(MUX.TEXT, 1, Buffer.alloc(LIMITS.maxControlFrameBytes + 1))],
    ['CREDIT of 3 bytes', encodeData(MUX.DATA, 1, Buffer.alloc(3)).fill(MUX.CREDIT, 0, 1)],
    ['CREDIT of 5 bytes', Buffer.concat([encodeCredit(1, 5), Buffer.alloc(1)])],
    ['ACCEPT whose stream id has a slash', encodeAccept(1, 'a/b')],
    ['ACCEPT whose stream id is 65 characters', encodeAccept(1, 'a'.repeat(65))],
    ['CLOSE without a code', Buffer.from([MUX.CLOSE, 0, 0, 0, 1, 0x03])],
    ['CLOSE with a 124-byte reason', Buffer.concat([encodeClose(1, 1000, ''), Buffer.alloc(124, 0x61)])],
    ['CLOSE whose reason is not UTF-8', Buffer.concat([encodeClose(1, 1000, ''), Buffer.from([0xff, 0xfe])])],
    ['ATTACH that is not JSON', encodeData(MUX.ATTACH, 1, Buffer.from('{nope'))],
    ['ATTACH without a token', encodeData(MUX.ATTACH, 1, Buffer.from('{"streamId":"s"}'))],
    ['ATTACH with a numeric token', encodeData(MUX.ATTACH, 1, Buffer.from('{"streamId":"s","token":5}'))],
    ['ATTACH that is JSON null', encodeData(MUX.ATTACH, 1, Buffer.from('null'))],
    ['ATTACH over the limit', encodeAttach(1, 's', 'x'.repeat(LIMITS.maxControlFrameBytes))],
    ['OPEN that is not JSON', encodeData(MUX.OPEN, 1, Buffer.from('{nope'))],
    ['OPEN over the limit', encodeOpen(1, { device: 'd', service: 'x'.repeat(LIMITS.maxControlFrameBytes) })],
  ])('refuses a frame that is %s (a string says why)', (_what, msg) => {
    const f = decodeMuxFrame(msg);
    expect(typeof f).toBe('string');
    expect((f as string).length).toBeGreaterThan(0);
  });
});

describe('MuxConnection over a real WebSocket', () => {
  it('carries 16 MiB each way through WsDuplex on an attached channel, with a half-close each way, then closes with 1000', async () => {
    const p = await muxPair();
    const { c, s } = await attachPair(p, 'big');
    expect(p.client.channelCount).toBe(1);
    expect(p.server.channelCount).toBe(1);
    const cClosed = closeOf(c);
    const sClosed = closeOf(s);
    const cd = duplexOf(c);
    const sd = duplexOf(s);
    c.resume();
    s.resume();
    const up = randomBytes(16 * MiB + 3);
    const down = randomBytes(16 * MiB + 7);
    const serverGot = readToEnd(sd);
    const clientGot = readToEnd(cd);
    // The server sends all but its last piece now, and the last one only after it has seen the
    // client's EOF: bytes still flow to a side that has ended its own direction.
    const last = 5000;
    let writableAtEof: boolean | null = null;
    sd.once('end', () => {
      writableAtEof = sd.writable;
      sd.end(down.subarray(down.length - last));
    });
    writeInPieces(cd, up);
    const head = down.subarray(0, down.length - last);
    for (let i = 0; i < head.length; ) {
      const n = 1 + ((i * 104729) % 65536);
      sd.write(head.subarray(i, i + n));
      i += n;
    }
    const [sg, cg] = await Promise.all([serverGot, clientGot]);
    expect(writableAtEof).toBe(true);
    expect(sg).toEqual({ bytes: up.length, digest: sha256(up) });
    expect(cg).toEqual({ bytes: down.length, digest: sha256(down) });
    expect(await cClosed).toEqual([1000, '']);
    expect(await sClosed).toEqual([1000, '']);
    expect(p.client.channelCount).toBe(0);
    expect(p.server.channelCount).toBe(0);
    expect(p.client.usable).toBe(true);
  }, 15_000);

  it.each([['TOKEN_USED'], ['UNAUTHORIZED'], ['STREAM_EXPIRED'], ['SHUTTING_DOWN']] as const)(
    'an attach the server refuses with %s rejects with that code',
    async (code) => {
      const p = await muxPair({ decide: (channel) => channel.refuse(ERRORS[code].ws, 'refused by the test') });
      const err = await refusalOf(p.client.attach({ streamId: 's', token: 't' }, { timeoutMs: 5_000 }));
      expect(err).toBeInstanceOf(DevstreamsError);
      expect(err.code).toBe(code);
      expect(p.client.channelCount).toBe(0);
      expect(p.server.channelCount).toBe(0);
      expect(p.client.usable).toBe(true);
    },
    5_000,
  );

  it('flow control: a paused receiver stops only its own stream, its sender writes at most a window, and nothing is lost', async () => {
    const p = await muxPair();
    const wire = wireWatch(p.sws); // what the server receives
    const back = wireWatch(p.cws); // what the client receives
    const fast = await attachPair(p, 'fast');
    const slow = await attachPair(p, 'slow');
    const slowGot = collect(slow.s); // slow.s stays paused: it never emits, so never credits
    // The slow stream: 6 MiB in 64 KiB messages, sent at once.
    const piece = 64 * 1024;
    const slowBytes = randomBytes(6 * MiB);
    let slowSent = 0;
    for (let i = 0; i < slowBytes.length; i += piece) {
      slow.c.send(slowBytes.subarray(i, i + piece), { binary: true }, (err) => {
        if (!err) slowSent += piece;
      });
    }
    // The fast stream, next to it: 8 MiB to completion through WsDuplex.
    const fd = duplexOf(fast.c);
    const fsd = duplexOf(fast.s);
    fast.c.resume();
    fast.s.resume();
    const fastBytes = randomBytes(8 * MiB);
    const fastGot = readToEnd(fsd);
    writeInPieces(fd, fastBytes);
    await wire.until(() => wire.dataBytes(slow.c.id) >= MUX_WINDOW_BYTES);
    expect(await fastGot).toEqual({ bytes: fastBytes.length, digest: sha256(fastBytes) });
    expect(wire.dataBytes(fast.c.id)).toBe(fastBytes.length);

    // While the fast one went through, the slow sender wrote one window to the wire and holds the rest.
    expect(wire.dataBytes(slow.c.id)).toBeGreaterThanOrEqual(MUX_WINDOW_BYTES);
    expect(wire.dataBytes(slow.c.id)).toBeLessThan(MUX_WINDOW_BYTES + piece);
    expect(wire.dataBytes(slow.c.id)).toBeLessThanOrEqual(2 * MUX_WINDOW_BYTES);
    expect(slow.c.bufferedAmount).toBeGreaterThanOrEqual(slowBytes.length - MUX_WINDOW_BYTES - piece);
    expect(slowSent).toBeLessThan(MUX_WINDOW_BYTES + piece);
    expect(slowGot.length).toBe(0);
    expect(back.frames.filter((f) => f.type === MUX.CREDIT && f.id === slow.c.id)).toEqual([]);
    expect(slow.s.readyState).toBe(slow.s.OPEN);

    // Resumed, the slow stream delivers everything, in order, and its sender drains.
    const all = binaryBytes(slow.s, slowBytes.length);
    slow.s.resume();
    await all;
    expect(slowGot.every((m) => m.isBinary)).toBe(true);
    expect(sha256(Buffer.concat(slowGot.map((m) => m.data)))).toBe(sha256(slowBytes));
    expect(wire.dataBytes(slow.c.id)).toBe(slowBytes.length);
    // Credits come in quarters of the window (or more).
    const credits = back.frames.filter((f) => f.type === MUX.CREDIT && f.id === slow.c.id);
    expect(credits.length).toBeGreaterThan(0);
    for (const f of credits) expect(f.bytes).toBeGreaterThanOrEqual(MUX_WINDOW_BYTES / 4);
    await back.until(() => slow.c.bufferedAmount === 0);
    expect(slow.c.readyState).toBe(slow.c.OPEN);
    expect(slow.s.readyState).toBe(slow.s.OPEN);
  }, 15_000);

  it('close(4403, "why") reaches the peer with its code and reason, and both sides end', async () => {
    const p = await muxPair();
    const a = await attachPair(p, 'a');
    // Both resumed: a paused channel holds the peer's CLOSE (and so its answer) as a paused ws does.
    a.c.resume();
    a.s.resume();
    const cClosed = closeOf(a.c);
    const sClosed = closeOf(a.s);
    a.c.close(4403, 'why');
    expect(a.c.readyState).toBe(a.c.CLOSING);
    expect(await sClosed).toEqual([4403, 'why']);
    expect(await cClosed).toEqual([4403, '']); // the answer's (empty) reason, as ws reports it
    expect(p.client.channelCount).toBe(0);
    expect(p.server.channelCount).toBe(0);
    // And from the server side.
    const b = await attachPair(p, 'b');
    b.c.resume();
    b.s.resume();
    const bc = closeOf(b.c);
    const bs = closeOf(b.s);
    b.s.close(4410, 'expired');
    expect(await bc).toEqual([4410, 'expired']);
    expect(await bs).toEqual([4410, '']);
    // A closed channel refuses to send.
    const err = await new Promise<Error | undefined>((r) => b.c.send(Buffer.from('x'), { binary: true }, r));
    expect((err as DevstreamsError).code).toBe('PEER_GONE');
  }, 5_000);

  it('terminate() ends the channel at once: the peer (even paused) sees 1006', async () => {
    const p = await muxPair();
    const a = await attachPair(p, 'a'); // both ends paused
    const cClosed = closeOf(a.c);
    const sClosed = closeOf(a.s);
    a.c.terminate();
    expect(a.c.readyState).toBe(a.c.CLOSED);
    expect(await cClosed).toEqual([1006, '']);
    expect(await sClosed).toEqual([1006, '']);
    expect(p.server.channelCount).toBe(0);
    const b = await attachPair(p, 'b');
    const bc = closeOf(b.c);
    b.s.terminate();
    expect(await bc).toEqual([1006, '']);
    expect(p.client.channelCount).toBe(0);
  }, 5_000);

  it('text messages and the CLOSE sent after data that waits for credit arrive after that data', async () => {
    const p = await muxPair();
    const wire = wireWatch(p.sws);
    const a = await attachPair(p, 'a');
    const got = collect(a.s); // paused: grants no credit
    const bytes = randomBytes(3 * MiB);
    for (let i = 0; i < bytes.length; i += 256 * 1024) a.c.send(bytes.subarray(i, i + 256 * 1024), { binary: true });
    a.c.send('{"type":"eof"}', { binary: false });
    a.c.send('{"type":"second"}', { binary: false });
    a.c.close(1000);
    await wire.until(() => wire.dataBytes(a.c.id) >= MUX_WINDOW_BYTES);
    const forA = () => wire.frames.filter((f) => f.id === a.c.id && f.type !== MUX.ATTACH).map((f) => f.type);
    expect(forA().every((t) => t === MUX.DATA)).toBe(true); // nothing jumped the queue
    const closed = closeOf(a.s);
    a.s.resume();
    expect(await closed).toEqual([1000, '']);
    const kinds = got.map((m) => (m.isBinary ? 'data' : m.data.toString()));
    const firstText = kinds.findIndex((k) => k !== 'data');
    expect(kinds.slice(firstText)).toEqual(['{"type":"eof"}', '{"type":"second"}']);
    expect(sha256(Buffer.concat(got.slice(0, firstText).map((m) => m.data)))).toBe(sha256(bytes));
    const types = forA();
    expect(types.slice(types.findIndex((t) => t !== MUX.DATA))).toEqual([MUX.TEXT, MUX.TEXT, MUX.CLOSE]);
  }, 5_000);

  it('open: resolves with the stream id the server accepts it for, or rejects with the refusal code', async () => {
    const opens = new Queue<{ channel: MuxChannel; body: unknown }>();
    const p = await muxPair({ onOpen: (channel, body) => opens.push({ channel, body }) });
    const opening = p.client.open({ device: 'dev-1', service: 'ssh' }, { timeoutMs: 5_000 });
    const o = await opens.next();
    expect(o.body).toEqual({ device: 'dev-1', service: 'ssh' });
    o.channel.accept('stream-123');
    const { channel, streamId } = await opening;
    expect(streamId).toBe('stream-123');
    expect(channel.readyState).toBe(channel.OPEN);
    expect(channel.isPaused).toBe(true);
    const refused = refusalOf(p.client.open({ device: 'dev-2', service: 'ssh' }, { timeoutMs: 5_000 }));
    (await opens.next()).channel.refuse(ERRORS.DEVICE_OFFLINE.ws, 'offline');
    expect((await refused).code).toBe('DEVICE_OFFLINE');
    expect(p.server.channelCount).toBe(1);
    // A server that takes no OPEN refuses it with NOT_FOUND.
    const q = await muxPair();
    expect((await refusalOf(q.client.open({ device: 'd', service: 's' }, { timeoutMs: 5_000 }))).code).toBe('NOT_FOUND');
  }, 5_000);

  it('with maxChannels 2, a third attach is refused with LIMIT_EXCEEDED; once one closes, another is accepted', async () => {
    const p = await muxPair({ maxChannels: 2 });
    const one = await attachPair(p, 'one');
    await attachPair(p, 'two');
    const err = await refusalOf(p.client.attach({ streamId: 'three', token: 't' }, { timeoutMs: 5_000 }));
    expect(err.code).toBe('LIMIT_EXCEEDED');
    expect(p.attaches.length).toBe(0); // the server's handler was not asked
    expect(p.server.channelCount).toBe(2);
    expect(p.client.channelCount).toBe(2);
    one.c.resume();
    one.s.resume();
    const closed = Promise.all([closeOf(one.c), closeOf(one.s)]);
    one.c.close(1000);
    await closed;
    expect(p.server.channelCount).toBe(1);
    const four = await attachPair(p, 'four');
    expect(four.c.readyState).toBe(four.c.OPEN);
    expect(p.server.channelCount).toBe(2);
  }, 5_000);

  it('an attach the server never answers rejects with DEVICE_TIMEOUT, and the server side sees the channel aborted', async () => {
    const p = await muxPair({ decide: () => {} }); // never accepts nor refuses
    const attaching = refusalOf(p.client.attach({ streamId: 's', token: 't' }, { timeoutMs: 150 }));
    const { channel } = await p.attaches.next();
    const serverClosed = closeOf(channel);
    expect((await attaching).code).toBe('DEVICE_TIMEOUT');
    expect(await serverClosed).toEqual([1006, '']);
    expect(p.client.channelCount).toBe(0);
    expect(p.server.channelCount).toBe(0);
    channel.accept(); // too late: nothing happens
    expect(channel.readyState).toBe(channel.CLOSED);
  }, 5_000);

  it('an attach whose signal aborts rejects with SHUTTING_DOWN, whether aborted before or while it waits', async () => {
    const p = await muxPair({ decide: () => {} });
    const before = await refusalOf(p.client.attach({ streamId: 's0', token: 't' }, { timeoutMs: 5_000, signal: AbortSignal.abort() }));
    expect(before.code).toBe('SHUTTING_DOWN');
    expect(p.client.channelCount).toBe(0);
    const ac = new AbortController();
    const attaching = refusalOf(p.client.attach({ streamId: 's1', token: 't' }, { timeoutMs: 5_000, signal: ac.signal }));
    const { channel, request } = await p.attaches.next();
    expect(request.streamId).toBe('s1'); // the aborted-before attach never reached the server
    const serverClosed = closeOf(channel);
    ac.abort();
    expect((await attaching).code).toBe('SHUTTING_DOWN');
    expect(await serverClosed).toEqual([1006, '']);
    expect(p.client.channelCount).toBe(0);
    expect(p.server.channelCount).toBe(0);
  }, 5_000);

  it('when the WebSocket closes, every channel ends with 1006, WsDuplex errors with PEER_GONE, and attaches are refused', async () => {
    const p = await muxPair({ decide: (channel, request) => request.streamId !== 'pending' && acceptPaused(channel, request) });
    const a = await attachPair(p, 'a');
    const b = await attachPair(p, 'b');
    const pending = refusalOf(p.client.attach({ streamId: 'pending', token: 't' }, { timeoutMs: 5_000 }));
    const { channel: pendingS } = await p.attaches.next();
    const closes = [a.c, a.s, b.c, b.s, pendingS].map(closeOf);
    const duplexes = [a.c, a.s].map((ch) => duplexOf(ch));
    a.c.resume();
    a.s.resume();
    const errors = duplexes.map((d) => once(d, 'error').then(([e]) => e as DevstreamsError));
    duplexes[0]!.write(randomBytes(100_000)); // mid-stream
    p.sws.close(1001, 'going away');
    for (const c of closes) expect(await c).toEqual([1006, '']);
    for (const e of errors) expect((await e).code).toBe('PEER_GONE');
    expect((await pending).code).toBe('PEER_GONE');
    expect(p.client.channelCount).toBe(0);
    expect(p.server.channelCount).toBe(0);
    expect(p.client.usable).toBe(false);
    expect((await refusalOf(p.client.attach({ streamId: 'late', token: 't' }, { timeoutMs: 5_000 }))).code).toBe('PEER_GONE');
  }, 5_000);

  it('a frame for an unknown channel id is dropped and the connection stays usable', async () => {
    const p = await rawPair();
    const ch = await p.attach(1);
    const got = collect(ch);
    ch.resume();
    p.raw.send(encodeData(MUX.DATA, 77, Buffer.from('lost')));
    p.raw.send(encodeData(MUX.TEXT, 77, Buffer.from('{"type":"eof"}')));
    p.raw.send(encodeCredit(77, 1000));
    p.raw.send(encodeClose(77, 4400, 'nobody'));
    p.raw.send(encodeClose(78, 1006, ''));
    p.raw.send(encodeData(MUX.DATA, 1, Buffer.from('kept')));
    const ch2 = await p.attach(2); // the round trip shows everything before it was handled
    expect(got.map((m) => m.data.toString())).toEqual(['kept']);
    expect(p.frames.length).toBe(0); // no answer to any of them
    expect(ch.readyState).toBe(ch.OPEN);
    expect(ch2.readyState).toBe(ch2.OPEN);
    expect(p.server.channelCount).toBe(2);
    expect(p.server.usable).toBe(true);
  }, 5_000);

  it.each([
    ['a 3-byte binary message', () => Buffer.from([MUX.DATA, 0, 0])],
    ['a text message', () => '{"type":"eof"}'],
    ['an unknown frame type', () => Buffer.from([9, 0, 0, 0, 1, 1, 2, 3])],
    ['an oversized TEXT', () => encodeData(MUX.TEXT, 1, Buffer.alloc(LIMITS.maxControlFrameBytes + 1, 0x20))],
    ['an oversized DATA', () => encodeData(MUX.DATA, 1, Buffer.alloc(LIMITS.maxDataFrameBytes + 1))],
    ['a CLOSE whose reason is not UTF-8', () => Buffer.concat([encodeClose(1, 1000, ''), Buffer.from([0xc3])])],
    ['a CREDIT of 2 bytes', () => encodeData(MUX.TEXT, 1, Buffer.alloc(2)).fill(MUX.CREDIT, 0, 1)],
    ['an ATTACH that is not JSON', () => encodeData(MUX.ATTACH, 2, Buffer.from('nope'))],
    ['an ATTACH for a channel in use', () => encodeAttach(1, 'again', 'again')],
    ['an ACCEPT sent to the relay', () => encodeAccept(1)],
  ])('%s closes the whole connection with 4400 and ends its channels with 4400', async (_what, msg) => {
    const p = await rawPair();
    const ch = await p.attach(1);
    const chClosed = closeOf(ch);
    const wsClosed = once(p.raw, 'close');
    p.raw.send(msg());
    expect(await chClosed).toEqual([ERRORS.BAD_REQUEST.ws, expect.any(String)]);
    const [code] = (await wsClosed) as [number, Buffer];
    expect(code).toBe(ERRORS.BAD_REQUEST.ws);
    expect(p.server.channelCount).toBe(0);
    expect(p.server.usable).toBe(false);
  }, 5_000);

  it('an ATTACH sent to a client closes the connection with 4400 and ends its channels with 4400', async () => {
    const p = await muxPair();
    const a = await attachPair(p, 'a');
    const closed = closeOf(a.c);
    const wsClosed = once(p.sws, 'close');
    p.sws.send(encodeAttach(9, 's', 't'));
    expect(await closed).toEqual([ERRORS.BAD_REQUEST.ws, expect.any(String)]);
    expect(((await wsClosed) as [number, Buffer])[0]).toBe(ERRORS.BAD_REQUEST.ws);
    expect(p.client.channelCount).toBe(0);
  }, 5_000);

  it('a CREDIT for more than was sent ends only that channel with 4400', async () => {
    const p = await rawPair();
    const ch = await p.attach(1);
    const got = collect(ch);
    ch.resume();
    ch.send(Buffer.alloc(100), { binary: true });
    const data = await p.frames.next();
    expect(data.type).toBe(MUX.DATA);
    p.raw.send(encodeCredit(1, 100)); // exactly what was sent: fine
    p.raw.send(encodeData(MUX.DATA, 1, Buffer.from('after the credit')));
    await binaryBytes(ch, 'after the credit'.length);
    expect(ch.readyState).toBe(ch.OPEN);
    const closed = closeOf(ch);
    p.raw.send(encodeCredit(1, 1)); // one byte more than is in flight
    expect(await p.frames.next()).toEqual({ type: MUX.CLOSE, id: 1, code: ERRORS.BAD_REQUEST.ws, reason: expect.any(String) });
    expect(await closed).toEqual([ERRORS.BAD_REQUEST.ws, expect.any(String)]);
    expect(got.length).toBe(1);
    // The connection and its other channels go on.
    expect(p.server.usable).toBe(true);
    const ch2 = await p.attach(2);
    expect(ch2.readyState).toBe(ch2.OPEN);
  }, 5_000);

  it('a sender that ignores the window gets its channel ended with 4400 once it is two windows ahead, and only that channel', async () => {
    const p = await rawPair();
    const ch = await p.attach(1); // paused: never credits
    const piece = Buffer.alloc(256 * 1024);
    for (let sent = 0; sent < 2 * MUX_WINDOW_BYTES; sent += piece.length) p.raw.send(encodeData(MUX.DATA, 1, piece));
    await p.attach(2); // a round trip: two windows are tolerated (a frame may start just below the window)
    expect(ch.readyState).toBe(ch.OPEN);
    expect(p.frames.length).toBe(0);
    const closed = closeOf(ch);
    p.raw.send(encodeData(MUX.DATA, 1, Buffer.alloc(1)));
    expect(await p.frames.next()).toEqual({ type: MUX.CLOSE, id: 1, code: ERRORS.BAD_REQUEST.ws, reason: expect.any(String) });
    expect(await closed).toEqual([ERRORS.BAD_REQUEST.ws, expect.any(String)]);
    expect(p.server.usable).toBe(true);
    expect(p.server.channelCount).toBe(1);
  }, 5_000);

  it('a binary message larger than a DATA frame (one big WsDuplex write) arrives intact and the connection goes on', async () => {
    const p = await muxPair();
    const a = await attachPair(p, 'a');
    const cd = duplexOf(a.c);
    const sd = duplexOf(a.s);
    a.c.resume();
    a.s.resume();
    const bytes = randomBytes(3 * MiB + 5);
    const got = readToEnd(sd);
    cd.end(bytes); // one chunk: one send() of 3 MiB
    expect(await got).toEqual({ bytes: bytes.length, digest: sha256(bytes) });
    expect(p.server.usable).toBe(true);
    expect(p.client.usable).toBe(true);
  }, 5_000);

  it('a text message larger than a control frame (a service can send one through the relay) ends only its stream, with PAYLOAD_TOO_LARGE', async () => {
    const p = await muxPair();
    const a = await attachPair(p, 'a');
    const b = await attachPair(p, 'b');
    const cd = duplexOf(a.c);
    a.c.resume();
    a.s.resume();
    const cdError = once(cd, 'error').then(([e]) => e as DevstreamsError);
    const before = readToEnd(cd).catch(() => null);
    a.s.send(Buffer.from('sent before'), { binary: true });
    const sendError = new Promise<Error | null | undefined>((r) => a.s.send('x'.repeat(LIMITS.maxControlFrameBytes + 1), { binary: false }, r));
    expect(((await sendError) as DevstreamsError).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await cdError).code).toBe('PAYLOAD_TOO_LARGE');
    await before;
    expect(cd.bytesIn).toBe('sent before'.length);
    // The connection and the other stream on it go on.
    expect(p.client.usable).toBe(true);
    expect(p.server.usable).toBe(true);
    const got = binaryBytes(b.s, 3);
    b.s.resume();
    b.c.send(Buffer.from('abc'), { binary: true });
    await got;
    expect(b.c.readyState).toBe(b.c.OPEN);
  }, 5_000);

  it('a channel that answers a CLOSE while its data waits for credit the peer will never give still ends at the close timeout', async () => {
    const p = await muxPair();
    const wire = wireWatch(p.sws);
    const a = await attachPair(p, 'a');
    a.s.resume(); // the relay's side reads; the agent's (a.c) stays paused: a slow target
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const cClosed = closeOf(a.c);
    // More text messages than a paused channel holds, then more data than a window: the agent's
    // channel gives up (CLOSE 4400, no handshake) and the relay's has a window's worth queued.
    for (let i = 0; i < 17; i++) a.s.send('{"type":"ping"}', { binary: false });
    for (let i = 0; i < 8; i++) a.s.send(Buffer.alloc(256 * 1024), { binary: true });
    expect(await cClosed).toEqual([ERRORS.BAD_REQUEST.ws, expect.any(String)]);
    await wire.until(() => wire.frames.some((f) => f.type === MUX.CLOSE && f.id === a.c.id));
    expect(a.s.readyState).toBe(a.s.CLOSING); // its answer waits behind the queued data
    expect(a.s.bufferedAmount).toBeGreaterThan(0);
    const sClosed = closeOf(a.s);
    vi.advanceTimersByTime(29_000);
    expect(a.s.readyState).toBe(a.s.CLOSING);
    vi.advanceTimersByTime(1_000); // ws gives a close handshake 30 s
    expect(a.s.readyState).toBe(a.s.CLOSED);
    expect(await sClosed).toEqual([1006, '']);
    expect(p.server.channelCount).toBe(0);
  }, 5_000);
});

describe('muxDeviceUrl', () => {
  it('keeps the node and any path prefix of a relay URL, and takes the stream id', () => {
    const id = 'A'.repeat(21) + '_';
    expect(muxDeviceUrl(`wss://hub.example.com:8443/api/v1/streams/${id}/connect`)).toEqual({
      url: 'wss://hub.example.com:8443/api/v1/relay/device',
      streamId: id,
    });
    expect(muxDeviceUrl(`wss://h.example/devstreams/api/v1/streams/${id}/connect`)).toEqual({
      url: 'wss://h.example/devstreams/api/v1/relay/device',
      streamId: id,
    });
  });

  it('is null for anything that is not a relay URL', () => {
    expect(muxDeviceUrl('not a url')).toBeNull();
    expect(muxDeviceUrl('wss://h.example/api/v1/streams/short/connect')).toBeNull();
    expect(muxDeviceUrl(`wss://h.example/api/v1/streams/${'a'.repeat(22)}/connect/more`)).toBeNull();
  });
});
