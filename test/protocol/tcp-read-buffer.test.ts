import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EDGE_WRITE_BUFFER_BYTES, HEADROOM_BYTES, TCP_READ_BYTES, TCP_READ_BYTES_HELD, TCP_READ_KEEP_BYTES, WS_HEADROOM_BYTES, adoptAccepted, claimRoom, sharedReadBuffer, type SharedRead } from '../../protocol/index.js';
import { readToEnd, sha256, writeInPieces } from '../helpers/streams.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A listening server whose accepted connections are handed to `onAccepted`. */
async function listen(onAccepted: (s: Socket) => void, pauseOnConnect = true): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect }, onAccepted);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

function dial(port: number): Promise<Socket> {
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  sockets.push(c);
  return once(c, 'connect').then(() => c);
}

/** Resolves once `cond()` holds (checked every 10 ms, for at most 5 s). */
const until = (cond: () => boolean): Promise<void> => vi.waitFor(() => expect(cond()).toBe(true), { timeout: 5000, interval: 10 });

/** A server whose one accepted connection is adopted, a client connected to it, and the adopted socket. */
async function adoptedPair(): Promise<{ server: Server; client: Socket; adopted: Socket }> {
  let adopted: Socket | undefined;
  const { server, port } = await listen((s) => {
    adopted = adoptAccepted(s, { allowHalfOpen: true });
    sockets.push(adopted);
  });
  const client = await dial(port);
  await until(() => adopted !== undefined);
  return { server, client, adopted: adopted! };
}

describe('adoptAccepted', () => {
  it('moves two accepted connections onto the one read buffer: paused, every byte intact, EOF carried both ways', async () => {
    const adopted: Socket[] = [];
    const accepted: Socket[] = [];
    const { port } = await listen((s) => {
      accepted.push(s);
      const a = adoptAccepted(s, { allowHalfOpen: true });
      sockets.push(a);
      adopted.push(a);
    });
    const clients = await Promise.all([dial(port), dial(port)]);
    await until(() => adopted.length === 2);
    expect(adopted[0]).not.toBe(accepted[0]);
    expect(accepted.every((s) => s.destroyed)).toBe(true);
    expect(adopted.every((s) => s.isPaused() && s.allowHalfOpen)).toBe(true);
    expect(new Set(adopted.map((s) => s.remotePort))).toEqual(new Set(clients.map((c) => c.localPort)));

    // Both read at once: a read not copied out of the shared buffer before the next shows as corrupt bytes.
    const data = clients.map(() => randomBytes(4 * 1024 * 1024));
    clients.forEach((c, i) => writeInPieces(c, data[i]!));
    const byPort = new Map(clients.map((c, i) => [c.localPort, sha256(data[i]!)]));
    const got = await Promise.all(adopted.map(readToEnd));
    got.forEach((g, i) => {
      expect(g.bytes).toBe(4 * 1024 * 1024);
      expect(g.digest).toBe(byPort.get(adopted[i]!.remotePort));
    });

    // Half-open: after the client's EOF the adopted socket still writes, then ends.
    const reply = once(clients[0]!, 'end');
    const back: Buffer[] = [];
    clients[0]!.on('data', (d: Buffer) => back.push(d));
    adopted[0]!.end('bye');
    await reply;
    expect(Buffer.concat(back).toString()).toBe('bye');
  });

  it('keeps the bytes of each read while they wait, unread, in the socket', async () => {
    const { client, adopted } = await adoptedPair();
    client.setNoDelay(true);
    adopted.read(0); // start reading, as a pipe would, without taking anything
    // Twelve writes, each read on its own into the shared buffer before the next is sent: each must
    // have been copied out, or all twelve show the last read's bytes.
    const data = randomBytes(12 * 1000);
    for (let i = 0; i < data.length; i += 1000) {
      client.write(data.subarray(i, i + 1000));
      await until(() => adopted.readableLength >= i + 1000);
    }
    client.end();
    const got: Buffer[] = [];
    adopted.on('data', (d: Buffer) => got.push(d));
    adopted.resume();
    await once(adopted, 'end');
    expect(Buffer.compare(Buffer.concat(got), data)).toBe(0);
  });

  it("takes the connection out of the server's count: close() completes while it still carries bytes", async () => {
    const { server, client, adopted } = await adoptedPair();
    servers.splice(servers.indexOf(server), 1);
    await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    const echoed = once(client, 'data');
    adopted.on('data', (d: Buffer) => adopted.write(d));
    adopted.resume();
    client.write('still here');
    expect(String((await echoed)[0])).toBe('still here');
  });

  it('stops reading a connection nobody reads (backpressure), and loses nothing once read', async () => {
    const { client, adopted } = await adoptedPair();
    const data = randomBytes(16 * 1024 * 1024);
    client.end(data);
    adopted.read(0); // start reading, as a pipe would, then take nothing
    await until(() => client.writableLength > 0 && adopted.readableLength > 0);
    // What the socket holds stays near its high-water mark; the rest waits in the sender.
    expect(adopted.readableLength).toBeLessThanOrEqual(adopted.readableHighWaterMark + 64 * 1024);
    expect(await readToEnd(adopted)).toEqual({ bytes: data.length, digest: sha256(data) });
  });

  it('takes more than 64 KiB in one read while its reader keeps up, every byte intact', async () => {
    const { client, adopted } = await adoptedPair();
    const data = randomBytes(8 * 1024 * 1024);
    const chunks: number[] = [];
    adopted.on('data', (d: Buffer) => chunks.push(d.length));
    const all = readToEnd(adopted);
    client.end(data);
    expect(await all).toEqual({ bytes: data.length, digest: sha256(data) });
    expect(Math.max(...chunks)).toBeGreaterThan(TCP_READ_BYTES_HELD); // 8 MiB arriving faster than 64 KiB reads take it
    expect(Math.max(...chunks)).toBeLessThanOrEqual(TCP_READ_BYTES);
  });

  it("takes a whole frame's write without asking to wait, and asks once EDGE_WRITE_BUFFER_BYTES wait", async () => {
    const { adopted } = await adoptedPair();
    adopted.cork(); // nothing reaches the kernel: what write() answers is the socket's own buffer
    expect(adopted.write(Buffer.alloc(TCP_READ_BYTES))).toBe(true); // Node's default (64 KiB) said false
    expect(adopted.write(Buffer.alloc(EDGE_WRITE_BUFFER_BYTES - TCP_READ_BYTES - 1))).toBe(true);
    expect(adopted.write(Buffer.alloc(1))).toBe(false);
    adopted.uncork();
  });

  it('returns a connection that is already being read as it is', async () => {
    let result: Socket | undefined;
    let accepted: Socket | undefined;
    const { port } = await listen((s) => {
      accepted = s;
      result = adoptAccepted(s, { allowHalfOpen: true });
      sockets.push(s);
    }, false);
    await dial(port);
    await until(() => result !== undefined);
    expect(result).toBe(accepted);
    expect(result!.destroyed).toBe(false);
  });
});

describe('sharedReadBuffer', () => {
  /** What sharedReadBuffer reads of its socket: flowing, nothing held; records what is pushed. */
  function fakeSocket(): { readableFlowing: boolean; readableLength: number; pushed: Buffer[]; push(b: Buffer): boolean } {
    return { readableFlowing: true, readableLength: 0, pushed: [], push(b) { this.pushed.push(b); return true; } };
  }
  function reader(s: ReturnType<typeof fakeSocket>): SharedRead {
    const r = sharedReadBuffer(() => s as unknown as Socket);
    r.buffer(); // Node's first ask, while the socket is being made
    return r;
  }
  /** One read as Node makes it: the buffer asked for, `n` bytes of `fill` into it, the callback. */
  function read(r: SharedRead, n: number, fill: number): Buffer {
    const b = r.buffer();
    b.fill(fill, 0, n);
    r.callback(n, b);
    return b;
  }
  const ends = (b: Buffer): number[] => [b[0]!, b[b.length - 1]!];

  it('hands a bulk read on in a buffer of the socket\'s own, reads the next into a new one, and never hands on the shared one', () => {
    const s = fakeSocket();
    const r = reader(s);
    const shared = read(r, TCP_READ_BYTES, 1); // full, into the shared buffer: copied out
    const own = read(r, TCP_READ_BYTES, 2); // after a full read: the socket's own buffer, handed on
    const next = read(r, TCP_READ_KEEP_BYTES, 3); // a new one of its own; half full is handed on too
    expect(s.pushed[0]!.buffer).not.toBe(shared.buffer);
    expect(own.buffer).not.toBe(shared.buffer);
    expect(s.pushed[1]!.buffer).toBe(own.buffer);
    expect(next.buffer).not.toBe(own.buffer);
    expect(s.pushed[2]!.buffer).toBe(next.buffer);
    expect(s.pushed.map((p) => p.length)).toEqual([TCP_READ_BYTES, TCP_READ_BYTES, TCP_READ_KEEP_BYTES]);
    expect(s.pushed.map(ends)).toEqual([[1, 1], [2, 2], [3, 3]]); // no read wrote over another's bytes
    // Every chunk, copied or handed on, has room in front for both headers (protocol/headroom.ts).
    for (const p of s.pushed) expect(claimRoom(p, HEADROOM_BYTES + WS_HEADROOM_BYTES)).not.toBeNull();
    // After a read that did not fill its buffer, reads go to the shared buffer again.
    expect(r.buffer().buffer).toBe(shared.buffer);
  });

  it('copies a small read out of the socket\'s own buffer, and the socket keeps no buffer after it', () => {
    const s = fakeSocket();
    const r = reader(s);
    const shared = read(r, TCP_READ_BYTES, 1);
    const own = read(r, 1000, 2); // the own buffer, but only 1000 bytes: copied
    expect(own.buffer).not.toBe(shared.buffer);
    expect(s.pushed[1]!.buffer).not.toBe(own.buffer);
    expect(ends(s.pushed[1]!)).toEqual([2, 2]);
    expect(r.buffer().buffer).toBe(shared.buffer);
  });

  it('gives a socket whose reader is paused the held size of the shared buffer, bulk transfer or not', () => {
    const s = fakeSocket();
    const r = reader(s);
    const shared = read(r, TCP_READ_BYTES, 1);
    s.readableFlowing = false;
    const held = r.buffer();
    expect(held.buffer).toBe(shared.buffer);
    expect(held.length).toBe(TCP_READ_BYTES_HELD);
  });
});
