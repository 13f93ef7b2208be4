import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { bridge, DevstreamsError, MESSAGE_PARTS, READ_BUFFER_BYTES, silentLogger, StreamClosedError, WsDuplex, type MessageSocket } from '../../protocol/index.js';
import { recordWrites, ticksDuring } from '../helpers/streams.js';

/** A connected pair of WsDuplex over a real loopback WebSocket. */
async function wsPair(): Promise<{ client: WsDuplex; server: WsDuplex; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const port = (wss.address() as net.AddressInfo).port;
  const serverSide = once(wss, 'connection');
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await once(ws, 'open');
  const [sws] = (await serverSide) as [WebSocket];
  const client = new WsDuplex(ws);
  const server = new WsDuplex(sws);
  // Tests that expect an error listen for it themselves; the rest must not die of a late 1006.
  const errors: Error[] = [];
  client.on('error', (e) => errors.push(e));
  server.on('error', (e) => errors.push(e));
  return {
    client,
    server,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

/** Reads until EOF without destroying the stream (for-await would destroy the duplex at the end). */
function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('WsDuplex', () => {
  it('carries bytes in order and a half-close: the side that ended still gets the whole reply', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const request = randomBytes(3 * 1024 * 1024 + 17);
    const reply = randomBytes(2 * 1024 * 1024 + 5);
    const closed = Promise.all([once(client, 'close'), once(server, 'close')]);
    const serverGot = readAll(server);
    client.end(request);
    // The server only answers after it has seen EOF, as a protocol relying on EOF would.
    expect(sha(await serverGot)).toBe(sha(request));
    const clientGot = readAll(client);
    server.end(reply);
    expect(sha(await clientGot)).toBe(sha(reply));
    await closed;
    expect(client.bytesIn).toBe(reply.length);
    expect(client.bytesOut).toBe(request.length);
  });

  it('applies backpressure: a writer facing a reader that does not read is told to wait', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    server.pause();
    const chunk = Buffer.alloc(64 * 1024);
    const limit = 256 * 1024 * 1024;
    let accepted = 0;
    // Write as a well-behaved producer does (wait for 'drain'); a writer is stalled once 'drain'
    // has not come for 500 ms. Without backpressure all 256 MiB would be accepted at once.
    for (;;) {
      if (client.write(chunk)) {
        accepted += chunk.length;
        if (accepted >= limit) break;
        continue;
      }
      accepted += chunk.length;
      const drained = await Promise.race([
        once(client, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 500)),
      ]);
      if (!drained || accepted >= limit) break;
    }
    expect(accepted).toBeLessThan(limit);
    // What the reader holds is bounded by its high-water mark plus one frame.
    expect(server.readableLength).toBeLessThanOrEqual(1024 * 1024 + chunk.length);
    const received = readAll(server);
    server.resume(); // a 'data' listener does not resume an explicitly paused stream
    client.end();
    server.end();
    expect((await received).length).toBe(accepted);
  });

  it('an abort on one side reaches the other with its code', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const err = once(server, 'error');
    client.abort('TARGET_UNREACHABLE', 'target went away');
    const [e] = (await err) as [StreamClosedError];
    expect(e).toBeInstanceOf(StreamClosedError);
    expect(e.wsCode).toBe(4503);
    expect(e.reason).toBe('target went away');
    // Its own name, so logs and util.inspect tell it from a plain DevstreamsError.
    expect(e.name).toBe('StreamClosedError');
    expect(String(e)).toBe('StreamClosedError: target went away');
  });

  it('a close without EOF is an error, not a clean end', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const err = once(server, 'error');
    client.destroy(new DevstreamsError('PEER_GONE', 'gone'));
    const [e] = (await err) as [DevstreamsError];
    expect(e.code).toBe('PEER_GONE');
  });

  it('hands a message to a flowing reader with no process.nextTick of its own (no read-ahead)', async () => {
    const ws = new FakeMessageSocket();
    const d = new WsDuplex(ws as unknown as MessageSocket);
    const got: Buffer[] = [];
    d.on('data', (c: Buffer) => got.push(c));
    await new Promise((r) => setImmediate(r)); // resume()'s own tick is behind us
    const ticks = ticksDuring(() => {
      for (let i = 0; i < 10; i++) ws.emit('message', Buffer.from(`m${i}`), true);
    });
    expect(ticks).toBe(0);
    expect(Buffer.concat(got).toString()).toBe('m0m1m2m3m4m5m6m7m8m9');
    d.destroy();
  });

  it('a reader that stopped taking bytes pauses the source, and resumes it when it reads again', async () => {
    const ws = new FakeMessageSocket();
    const d = new WsDuplex(ws as unknown as MessageSocket, 256 * 1024);
    const piece = Buffer.alloc(16 * 1024, 7);
    let sent = 0;
    // Nobody reads: the source is paused once the read buffer is full, not before.
    while (!ws.isPaused && sent < 64) {
      ws.emit('message', piece, true);
      sent++;
    }
    expect(ws.isPaused).toBe(true);
    expect(sent * piece.length).toBe(READ_BUFFER_BYTES);
    let bytes = 0;
    d.on('data', (c: Buffer) => (bytes += c.length));
    await new Promise((r) => setImmediate(r));
    expect(ws.isPaused).toBe(false);
    expect(bytes).toBe(sent * piece.length);
    // And it keeps flowing after the resume.
    ws.emit('message', piece, true);
    expect(bytes).toBe((sent + 1) * piece.length);
    d.destroy();
  });
});

/** The MessageSocket a WsDuplex reads: messages emitted by the test, pause and resume recorded. */
class FakeMessageSocket extends EventEmitter {
  readonly CONNECTING = 0 as const;
  readonly OPEN = 1 as const;
  readonly CLOSING = 2 as const;
  readonly CLOSED = 3 as const;
  readyState = 1;
  bufferedAmount = 0;
  isPaused = false;
  binaryType = 'nodebuffer';
  send(_data: Buffer | string, _o: { binary: boolean }, cb?: (err?: Error) => void): void {
    cb?.();
  }
  pause(): void {
    this.isPaused = true;
  }
  resume(): void {
    this.isPaused = false;
  }
  close(): void {
    this.readyState = 3;
  }
  terminate(): void {
    this.readyState = 3;
  }
}

describe('bridge', () => {
  it('pipes a WebSocket stream to a TCP peer with half-close both ways, and counts bytes', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    // TCP peer: reads everything until EOF, then answers with its hash and closes its side.
    const tcp = net.createServer({ allowHalfOpen: true }, (sock) => {
      const h = createHash('sha256');
      sock.on('data', (d) => h.update(d));
      sock.on('end', () => sock.end(h.digest('hex')));
    });
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    cleanups.push(async () => void tcp.close());
    const sock = net.connect({ port: (tcp.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    await once(sock, 'connect');
    const done = bridge(server, sock, silentLogger, { a: 'relay', b: 'target' });
    const payload = randomBytes(5 * 1024 * 1024);
    const answer = readAll(client);
    client.end(payload);
    expect((await answer).toString()).toBe(sha(payload));
    const result = await done;
    expect(result.error).toBeUndefined();
    expect(result.bytesAtoB).toBe(payload.length);
    expect(result.bytesBtoA).toBe(64);
  });

  /**
   * A bridge from a stand-in for a WsDuplex (a Duplex the test pushes into) to a TCP echo, with the
   * socket's writes as they are handed to Node's TCP handle (`writes()`: ['write', bytes] or
   * ['writev', chunks]). `allBack` resolves when `total` bytes have come back through the echo.
   */
  async function bridgedToEcho(total: number) {
    const tcp = net.createServer((s) => s.pipe(s)); // echo
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    cleanups.push(async () => void tcp.close());
    const sock = net.connect({ port: (tcp.address() as net.AddressInfo).port, host: '127.0.0.1' });
    await once(sock, 'connect');
    const calls = recordWrites(sock);
    /** The socket's writes so far: ['write', bytes] or ['writev', chunks]. */
    const writes = (): Array<[string, number]> => calls.map((c) => (c.length === 1 ? ['write', c[0]!.length] : ['writev', c.length]));
    const back: Buffer[] = [];
    let echoed = (): void => {};
    const other = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        back.push(chunk);
        if (Buffer.concat(back).length >= total) echoed();
        cb();
      },
    });
    const allBack = new Promise<void>((resolve) => (echoed = resolve));
    void bridge(other, sock, silentLogger);
    cleanups.push(async () => void sock.destroy());
    await new Promise((r) => setImmediate(r)); // the pipes flow from the next tick
    return { sock, other, writes, back, allBack };
  }
  const parts = (): Buffer[] => [randomBytes(1000), randomBytes(2000), randomBytes(3000)];

  it("a message's parts go to the TCP socket as one write, at once, and arrive", async () => {
    const { sock, other, writes, back, allBack } = await bridgedToEcho(6000);
    const sent = parts();
    other.emit(MESSAGE_PARTS, true); // as WsDuplex does around a message in parts
    for (const p of sent) other.push(p);
    expect(writes()).toEqual([]); // held together until the message's last part
    other.emit(MESSAGE_PARTS, false);
    expect(writes()).toEqual([['writev', 3]]); // one system call, before the tick ends
    expect(sock.writableCorked).toBe(0);
    await allBack;
    expect(sha(Buffer.concat(back))).toBe(sha(Buffer.concat(sent)));
  });

  it('a chunk alone is written at once, not held until the tick ends', async () => {
    const { sock, other, writes, allBack } = await bridgedToEcho(1);
    other.push(Buffer.from('x'));
    expect(writes()).toEqual([['write', 1]]);
    expect(sock.writableCorked).toBe(0);
    await allBack;
  });

  it('what a paused source had buffered goes out as one write when it flows again', async () => {
    const { sock, other, writes, back, allBack } = await bridgedToEcho(6000);
    other.pause();
    const sent = parts();
    for (const p of sent) other.push(p);
    other.resume(); // flows on the next tick: all three chunks in one tick
    await new Promise((r) => setImmediate(r));
    expect(writes()).toEqual([['writev', 3]]); // each written alone had been three system calls
    expect(sock.writableCorked).toBe(0);
    await allBack;
    expect(sha(Buffer.concat(back))).toBe(sha(Buffer.concat(sent)));
  });

  it('WsDuplex marks a message in parts, and only such a message', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const marks: boolean[] = [];
    const seen: number[] = [];
    server.on(MESSAGE_PARTS, (begin: boolean) => marks.push(begin));
    server.on('data', () => seen.push(marks.length));
    await new Promise((r) => setImmediate(r)); // flowing from the next tick
    const ws = (server as unknown as { ws: { emit(e: string, ...a: unknown[]): boolean } }).ws;
    ws.emit('message', [Buffer.from('ab'), Buffer.from('cd')], true); // as ws delivers 'fragments'
    ws.emit('message', [Buffer.from('e')], true);
    ws.emit('message', Buffer.from('f'), true);
    expect(marks).toEqual([true, false]);
    expect(seen).toEqual([1, 1, 2, 2]); // both parts inside the marks, the single ones after
    client.destroy();
  });

  it('a TCP reset aborts the WebSocket side with an error the peer sees', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const tcp = net.createServer((sock) => sock.once('data', () => sock.resetAndDestroy()));
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    cleanups.push(async () => void tcp.close());
    const sock = net.connect({ port: (tcp.address() as net.AddressInfo).port, host: '127.0.0.1' });
    await once(sock, 'connect');
    const clientErr = once(client, 'error');
    const done = bridge(server, sock, silentLogger);
    client.write('hello');
    const result = await done;
    expect(result.error).toBeDefined();
    expect(result.failedSide).toBe('b');
    const [e] = (await clientErr) as [DevstreamsError];
    expect(e.code).toBe('PEER_GONE');
  });
});

describe('bridge with a TCP peer that replies and then resets', () => {
  it('aborts the WebSocket side, although Node reports that reset as a plain EOF', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const tcp = net.createServer((sock) =>
      sock.once('data', () => {
        sock.write('0123456789');
        sock.resetAndDestroy();
      }),
    );
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    cleanups.push(async () => void tcp.close());
    // Half-open, as the agent's targets are: without the bridge's probe this socket sees only 'end'.
    const sock = net.connect({ port: (tcp.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    await once(sock, 'connect');
    const got: Buffer[] = [];
    client.on('data', (c: Buffer) => got.push(c));
    const clientErr = once(client, 'error');
    const done = bridge(server, sock, silentLogger, { a: 'relay', b: 'target' });
    client.write('hello');
    const result = await done;
    expect(result.failedSide).toBe('b');
    expect((result.error as NodeJS.ErrnoException).code).toMatch(/^(ECONNRESET|EPIPE)$/);
    const [e] = (await clientErr) as [DevstreamsError];
    expect(e.code).toBe('PEER_GONE');
    expect(Buffer.concat(got).toString()).toBe('0123456789');
  }, 10_000);
});

describe('bridge with a side that closed before it began', () => {
  it('resolves, reports the error and closes the other side (a target that replied and reset early)', async () => {
    const { client, server, close } = await wsPair();
    cleanups.push(close);
    const tcp = net.createServer((sock) => sock.end('early reply'));
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    cleanups.push(async () => void tcp.close());
    const sock = net.connect({ port: (tcp.address() as net.AddressInfo).port, host: '127.0.0.1' });
    sock.on('error', () => {});
    sock.resume();
    await once(sock, 'close'); // gone before the bridge exists
    const clientErr = once(client, 'error');
    const result = await bridge(server, sock, silentLogger, { a: 'relay', b: 'target' });
    expect(result.failedSide).toBe('b');
    expect(result.error).toBeDefined();
    const [e] = (await clientErr) as [DevstreamsError];
    expect(e.code).toBe('PEER_GONE');
  });
});
