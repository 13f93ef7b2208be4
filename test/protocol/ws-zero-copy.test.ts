import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { MuxConnection, zeroMask, type MuxAttachRequest, type MuxChannel } from '../../protocol/index.js';
import { receiveAsViews, writeFrameInPlace, writeFrameParts } from '../../protocol/ws-zero-copy.js';
import { WS_HEADROOM_BYTES, allocWithHeadroom, claimRoom } from '../../protocol/headroom.js';
import { Queue } from '../helpers/queue.js';
import { closePairs, KiB, messages, pair, whole } from '../helpers/ws-pair.js';
import { recordWrites } from '../helpers/streams.js';

// Plain ws:// on loopback (test/helpers/ws-pair.ts): a larger message arrives in several reads.

afterEach(closePairs);

describe('receiveAsViews', () => {
  it('a binary message over several reads arrives as views into them, in order, with the bytes sent', async () => {
    const { cws, sws } = await pair({}, { generateMask: zeroMask });
    expect(receiveAsViews(sws)).toBe(true);
    const got = messages(sws);
    const payload = randomBytes(600 * KiB);
    cws.send(payload);
    const m = await got.next();
    expect(m.isBinary).toBe(true);
    expect(Array.isArray(m.data)).toBe(true);
    expect((m.data as Buffer[]).length).toBeGreaterThan(1); // ws alone joins them into one
    expect(whole(m.data).equals(payload)).toBe(true);
  });

  it('leaves to ws what views cannot carry: a real masking key, text, small messages', async () => {
    const { cws, sws } = await pair(); // ws's own random masking key
    receiveAsViews(sws);
    const got = messages(sws);
    const big = randomBytes(300 * KiB);
    cws.send(big);
    cws.send('{"type":"eof"}');
    cws.send(Buffer.from('tiny'));
    const a = await got.next();
    expect(a.data).toHaveLength(1); // unmasked by ws, into one buffer
    expect(whole(a.data).equals(big)).toBe(true);
    const t = await got.next();
    expect(t.isBinary).toBe(false);
    expect((t.data as Buffer).toString()).toBe('{"type":"eof"}');
    const s = await got.next();
    expect(whole(s.data).toString()).toBe('tiny');
  });

  it("keeps ws's size limit: a message over maxPayload closes with 1009", async () => {
    const { cws, sws } = await pair({ maxPayload: 100 * KiB }, { generateMask: zeroMask });
    receiveAsViews(sws);
    const got = messages(sws);
    sws.on('error', () => {});
    const closed = once(cws, 'close');
    cws.send(randomBytes(200 * KiB));
    const [code] = (await closed) as [number];
    expect(code).toBe(1009);
    expect(got.length).toBe(0);
  });

  it('a WebSocket without the expected receiver gets binaryType only', () => {
    const fake = { binaryType: 'nodebuffer' } as unknown as WebSocket;
    expect(receiveAsViews(fake)).toBe(false);
    expect(fake.binaryType).toBe('fragments');
  });
});

describe('writeFrameParts', () => {
  it('writes one frame of the parts, in order with ws.send, at every length encoding, both ways', async () => {
    const { cws, sws } = await pair({}, { generateMask: zeroMask });
    for (const [from, to] of [[sws, cws], [cws, sws]] as const) {
      const got = messages(to);
      for (const n of [0, 100, 1000, 70_000]) {
        const parts = [randomBytes(Math.floor(n / 3)), randomBytes(n - 2 * Math.floor(n / 3)), randomBytes(Math.floor(n / 3))];
        const head = Buffer.from([1, 2, 3, 4, 5]);
        from.send(Buffer.from('before'));
        const written = new Promise<Error | undefined>((resolve) => expect(writeFrameParts(from, head, parts, resolve)).toBe(true));
        from.send(Buffer.from('after'));
        expect(await written).toBeFalsy();
        expect((await got.next()).data.toString()).toBe('before');
        const m = await got.next();
        expect(m.isBinary).toBe(true);
        expect((m.data as Buffer).equals(Buffer.concat([head, ...parts]))).toBe(true);
        expect((await got.next()).data.toString()).toBe('after');
      }
    }
  });

  it('writes nothing and says so once the WebSocket is closing', async () => {
    const { cws } = await pair();
    cws.close();
    expect(writeFrameParts(cws, Buffer.from([1]), [Buffer.from('x')])).toBe(false);
  });
});

describe('writeFrameInPlace', () => {
  /** The buffers handed to the WebSocket's socket, as they are written. */
  function socketWrites(ws: WebSocket): Buffer[] {
    const sock = (ws as unknown as { _socket: { write: (b: Buffer, ...rest: unknown[]) => boolean } })._socket;
    const writes: Buffer[] = [];
    const write = sock.write.bind(sock);
    sock.write = (b: Buffer, ...rest: unknown[]) => (writes.push(b), write(b, ...rest));
    return writes;
  }

  it('writes the header into the room in front of the bytes: one buffer, the bytes not copied, at every length encoding, both ways', async () => {
    const { cws, sws } = await pair({}, { generateMask: zeroMask });
    for (const [from, to] of [[sws, cws], [cws, sws]] as const) {
      const got = messages(to);
      const writes = socketWrites(from);
      for (const n of [0, 100, 1000, 70_000]) {
        const payload = allocWithHeadroom(n);
        randomBytes(n).copy(payload);
        const sent = Buffer.from(payload);
        from.send(Buffer.from('before'));
        writes.length = 0;
        const written = new Promise<Error | undefined>((resolve) => expect(writeFrameInPlace(from, payload, resolve)).toBe(true));
        expect(writes).toHaveLength(1);
        expect(writes[0]!.buffer).toBe(payload.buffer); // the header went in front, in the same memory
        expect(writes[0]!.byteOffset + writes[0]!.length).toBe(payload.byteOffset + n);
        from.send(Buffer.from('after'));
        expect(await written).toBeFalsy();
        expect((await got.next()).data.toString()).toBe('before');
        const m = await got.next();
        expect(m.isBinary).toBe(true);
        expect(whole(m.data).equals(sent)).toBe(true);
        expect((await got.next()).data.toString()).toBe('after');
      }
    }
  });

  it('writes nothing, and claims no room, for bytes without room or a WebSocket that is closing', async () => {
    const { cws } = await pair();
    expect(writeFrameInPlace(cws, Buffer.from('no room'))).toBe(false);
    const payload = allocWithHeadroom(3);
    cws.close();
    expect(writeFrameInPlace(cws, payload)).toBe(false);
    expect(claimRoom(payload, WS_HEADROOM_BYTES)).not.toBeNull(); // still there for whoever sends it
  });
});

describe('a multiplexed connection', () => {
  it("hands a 'fragments' channel a DATA frame in parts, and sendParts forwards them as one frame", async () => {
    const { cws, sws } = await pair({}, { generateMask: zeroMask });
    const attached = new Queue<{ channel: MuxChannel; request: MuxAttachRequest }>();
    new MuxConnection({ ws: sws, role: 'server', onAttach: (channel, request) => {
      channel.accept();
      attached.push({ channel, request });
    } });
    const client = new MuxConnection({ ws: cws, role: 'client' });
    const c = await client.attach({ streamId: 's1', token: 't1' }, { timeoutMs: 5_000 });
    const { channel: s } = await attached.next();
    s.binaryType = 'fragments';
    const atServer = new Queue<Buffer[]>();
    s.on('message', (data: Buffer[]) => atServer.push(data));
    const back = new Queue<Buffer>();
    c.on('message', (data: Buffer) => back.push(data));
    c.resume();
    const payload = randomBytes(512 * KiB);
    c.send(payload, { binary: true });
    const parts = await atServer.next();
    expect(parts.length).toBeGreaterThan(1);
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
    s.sendParts(parts); // as the relay forwards it
    const echoed = await back.next(); // the client's channel ('nodebuffer') gets it whole
    expect(echoed.equals(payload)).toBe(true);
  });

  it('sends bytes read at the edges as one buffer, and a small frame without room as one buffer too', async () => {
    const { cws, sws } = await pair({}, { generateMask: zeroMask });
    const attached = new Queue<MuxChannel>();
    new MuxConnection({ ws: sws, role: 'server', onAttach: (channel) => {
      channel.accept();
      attached.push(channel);
    } });
    const client = new MuxConnection({ ws: cws, role: 'client' });
    const c = await client.attach({ streamId: 's2', token: 't2' }, { timeoutMs: 5_000 });
    const s = await attached.next();
    const atServer = new Queue<Buffer>();
    s.on('message', (data: Buffer) => atServer.push(data));
    s.resume();
    const writes = recordWrites((cws as unknown as { _socket: Writable })._socket);
    for (const n of [1, 64 * KiB]) {
      const payload = allocWithHeadroom(n); // as protocol/tcp-read-buffer.ts reads
      randomBytes(n).copy(payload);
      const sent = Buffer.from(payload);
      writes.length = 0;
      c.send(payload, { binary: true });
      expect((await atServer.next()).equals(sent)).toBe(true);
      expect(writes[0]).toHaveLength(1); // the frame alone: nothing for Node's TLS socket to join
      expect(writes[0]![0]!.buffer).toBe(payload.buffer);
    }
    writes.length = 0;
    c.send(Buffer.from('a caller\'s own bytes'), { binary: true }); // no room: copied in behind the header
    expect((await atServer.next()).toString()).toBe("a caller's own bytes");
    expect(writes[0]).toHaveLength(1);
  });
});
