import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StatusThrottle } from '../../agent/status-throttle.js';
import { StreamTable } from '../../agent/stream-table.js';
import { TargetDialer } from '../../agent/target-dialer.js';
import { DevstreamsError, EDGE_WRITE_BUFFER_BYTES, TCP_READ_BYTES } from '../../protocol/index.js';
import { readToEnd, sha256, writeInPieces } from '../helpers/streams.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('TargetDialer', () => {
  it('connects with TCP_NODELAY and leaves the socket paused', async () => {
    const server = createServer((s) => s.on('error', () => {}).end('hi'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = await new TargetDialer({ connectTimeoutMs: 2000 }).dial('127.0.0.1', (server.address() as AddressInfo).port);
    expect(socket.readableFlowing).toBe(null);
    expect(socket.allowHalfOpen).toBe(true);
    socket.destroy();
    server.close();
  });

  it("takes a whole frame's write without asking to wait, and asks once EDGE_WRITE_BUFFER_BYTES wait", async () => {
    const server = createServer((s) => s.on('error', () => {}).resume());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = await new TargetDialer({ connectTimeoutMs: 2000 }).dial('127.0.0.1', (server.address() as AddressInfo).port);
    socket.cork(); // nothing reaches the kernel: what write() answers is the socket's own buffer
    expect(socket.write(Buffer.alloc(TCP_READ_BYTES))).toBe(true); // Node's default (64 KiB) said false
    expect(socket.write(Buffer.alloc(EDGE_WRITE_BUFFER_BYTES - TCP_READ_BYTES - 1))).toBe(true);
    expect(socket.write(Buffer.alloc(1))).toBe(false);
    socket.destroy();
    server.close();
  });

  it('delivers every byte of two targets read at once, in order, through the one shared read buffer', async () => {
    // Two targets each send 4 MiB in writes of varying size; both sockets are read at once, so a read
    // that was not copied out of the shared buffer before the next would show as corrupt bytes.
    const sent = new Map<number, string>();
    const server = createServer((s) => {
      const data = randomBytes(4 * 1024 * 1024);
      sent.set(s.remotePort!, sha256(data));
      writeInPieces(s, data);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const dialer = new TargetDialer({ connectTimeoutMs: 2000 });
    const port = (server.address() as AddressInfo).port;
    const sockets = await Promise.all([dialer.dial('127.0.0.1', port), dialer.dial('127.0.0.1', port)]);
    const digests = await Promise.all(sockets.map(async (sock) => ({ port: sock.localPort!, ...(await readToEnd(sock)) })));
    for (const d of digests) {
      expect(d.bytes).toBe(4 * 1024 * 1024);
      expect(d.digest).toBe(sent.get(d.port));
    }
    for (const sock of sockets) sock.destroy();
    server.close();
  });

  it('keeps the bytes of each read while they wait, unread, in the socket', async () => {
    // Small writes, one read each, land in the shared buffer one after another while nothing is
    // taken from the socket: each must have been copied out, or they all show the last read's bytes.
    const data = randomBytes(64 * 1000);
    let written!: () => void;
    const allWritten = new Promise<void>((r) => (written = r));
    const server = createServer(async (s) => {
      s.setNoDelay(true);
      for (let i = 0; i < data.length; i += 1000) {
        s.write(data.subarray(i, i + 1000));
        await new Promise((r) => setTimeout(r, 1));
      }
      s.end();
      written();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const sock = await new TargetDialer({ connectTimeoutMs: 2000 }).dial('127.0.0.1', (server.address() as AddressInfo).port);
    sock.read(0); // start reading, as a pipe would, without taking anything
    await allWritten;
    await new Promise((r) => setTimeout(r, 50));
    expect(sock.readableLength).toBeGreaterThan(4000); // several reads are waiting
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    await once(sock, 'end');
    expect(Buffer.compare(Buffer.concat(got), data)).toBe(0);
    sock.destroy();
    server.close();
  });

  it('stops reading a target nobody reads (backpressure), and loses nothing once read', async () => {
    const data = randomBytes(16 * 1024 * 1024);
    let serverSide!: Socket;
    const server = createServer((s) => {
      serverSide = s;
      s.on('error', () => {});
      s.end(data);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const sock = await new TargetDialer({ connectTimeoutMs: 2000 }).dial('127.0.0.1', (server.address() as AddressInfo).port);
    sock.pause();
    sock.read(0); // start reading, as a pipe would, then never take anything
    await new Promise((r) => setTimeout(r, 300));
    // What the socket holds stays near its high-water mark; the rest waits in the sender.
    expect(sock.readableLength).toBeLessThanOrEqual(sock.readableHighWaterMark + 64 * 1024);
    expect(serverSide.writableLength).toBeGreaterThan(0);
    expect(await readToEnd(sock)).toEqual({ bytes: data.length, digest: sha256(data) });
    sock.destroy();
    server.close();
  });

  it('gives up after connectTimeoutMs with TARGET_UNREACHABLE naming host:port', async () => {
    // TEST-NET-1: never answers (or is unreachable at once without a route); either way a 503.
    const err = await new TargetDialer({ connectTimeoutMs: 150 }).dial('192.0.2.1', 9).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DevstreamsError);
    expect((err as DevstreamsError).code).toBe('TARGET_UNREACHABLE');
    expect((err as DevstreamsError).reason).toMatch(/^cannot connect to 192\.0\.2\.1:9: E[A-Z]+/);
  });

  it('stops a connect in progress when aborted', async () => {
    const ac = new AbortController();
    const p = new TargetDialer({ connectTimeoutMs: 5000 }).dial('192.0.2.1', 9, ac.signal).catch((e: unknown) => e);
    ac.abort();
    const err = (await p) as DevstreamsError;
    expect(['SHUTTING_DOWN', 'TARGET_UNREACHABLE']).toContain(err.code);
  });
});

describe('StreamTable', () => {
  it('counts setups and open streams against the limit and reports changes', async () => {
    const counts: number[] = [];
    const t = new StreamTable({ maxStreams: 2, onChange: (n) => counts.push(n) });
    const a = t.reserve('a', 'echo')!;
    expect(t.reserve('a', 'echo')).toBe(null);
    const b = t.reserve('b', 'echo')!;
    expect(t.isFull).toBe(true);
    expect(t.reserve('c', 'echo')).toBe(null);
    t.release(a);
    t.release(a);
    expect(t.size).toBe(1);
    expect(counts).toEqual([1, 2, 1]);
    await t.stop(10);
    expect(b.abort.signal.aborted).toBe(true);
    expect(t.size).toBe(0);
    expect(t.reserve('d', 'echo')).toBe(null);
  });
});

describe('StatusThrottle', () => {
  it('publishes at most once per interval, with the latest state', () => {
    vi.useFakeTimers();
    let n = 0;
    const th = new StatusThrottle({ minIntervalMs: 1000, publish: () => n++ });
    th.published();
    th.poke();
    th.poke();
    expect(n).toBe(0);
    vi.advanceTimersByTime(999);
    expect(n).toBe(0);
    vi.advanceTimersByTime(1);
    expect(n).toBe(1);
    vi.advanceTimersByTime(5000);
    th.poke();
    expect(n).toBe(2);
    th.poke();
    th.cancel();
    vi.advanceTimersByTime(5000);
    expect(n).toBe(2);
  });
});
