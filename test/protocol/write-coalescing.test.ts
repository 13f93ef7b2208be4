import { once } from 'node:events';
import net from 'node:net';
import { Duplex, Writable } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws';
import { MAX_COALESCED_BYTES, coalesceCorkedWrites } from '../../protocol/index.js';

const publish = {
  cmd: 'publish' as const,
  topic: 'devstreams/v1/devices/dev-1/streams/request',
  payload: Buffer.from(JSON.stringify({ v: 1, streamId: 'a'.repeat(32), service: 'ssh' })),
  qos: 1 as const,
  messageId: 7,
  retain: false,
  dup: false,
};

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** A client WebSocket as a stream (as MQTT.js and the hub use it) and the messages its server receives. */
async function wsStreamPair(): Promise<{ stream: Duplex; messages: Buffer[] }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const messages: Buffer[] = [];
  wss.on('connection', (ws) => ws.on('message', (d: Buffer) => messages.push(d)));
  const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`, { perMessageDeflate: false });
  await once(ws, 'open');
  const stream = createWebSocketStream(ws);
  closers.push(async () => {
    stream.destroy();
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  return { stream, messages };
}

/** Writes one packet the way MQTT.js and Aedes do (mqtt-packet), then waits until `n` messages arrived. */
async function writePacket(stream: Duplex, messages: Buffer[], n: number): Promise<void> {
  mqttPacket.writeToStream(publish, stream);
  while (messages.length < n) await new Promise((r) => setTimeout(r, 5));
}

describe('coalesceCorkedWrites', () => {
  it('sends an MQTT packet written in pieces as one WebSocket message, byte for byte', async () => {
    const { stream, messages } = await wsStreamPair();
    coalesceCorkedWrites(stream);
    await writePacket(stream, messages, 1);
    await writePacket(stream, messages, 2);
    expect(messages).toHaveLength(2);
    const want = mqttPacket.generate(publish);
    expect(Buffer.compare(messages[0]!, want)).toBe(0);
    expect(Buffer.compare(messages[1]!, want)).toBe(0);
  });

  it('is what makes the difference: the same stream without it sends a message per piece', async () => {
    const { stream, messages } = await wsStreamPair();
    const want = mqttPacket.generate(publish);
    mqttPacket.writeToStream(publish, stream);
    // wait for the whole packet's bytes, however many messages carry them
    while (Buffer.concat(messages).length < want.length) await new Promise((r) => setTimeout(r, 5));
    expect(messages.length).toBeGreaterThan(1);
    expect(Buffer.compare(Buffer.concat(messages), want)).toBe(0);
  });

  it('joins string and buffer chunks in order, and passes a write error to every callback', async () => {
    const seen: Buffer[] = [];
    let fail = false;
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        seen.push(chunk);
        cb(fail ? new Error('broken pipe') : null);
      },
    });
    coalesceCorkedWrites(sink);
    sink.cork();
    sink.write('ab');
    sink.write(Buffer.from('cd'));
    const last = new Promise((r) => sink.write('é', r));
    process.nextTick(() => sink.uncork());
    await last;
    expect(seen.map((b) => b.toString())).toEqual(['abcdé']);

    fail = true;
    const errors: Error[] = [];
    sink.on('error', (e) => errors.push(e));
    sink.cork();
    const results = [new Promise((r) => sink.write('x', r)), new Promise((r) => sink.write('y', r))];
    sink.uncork();
    const got = await Promise.all(results);
    expect(got.every((e) => e instanceof Error)).toBe(true);
    expect(seen.at(-1)!.toString()).toBe('xy');
  });

  it('never joins a burst into a message larger than MAX_COALESCED_BYTES: 1,000 packets written behind a slow write arrive intact', async () => {
    const { stream, messages } = await wsStreamPair();
    coalesceCorkedWrites(stream);
    const want = mqttPacket.generate(publish);
    // As an agent answering 1,000 stream requests at once: everything written while the first
    // write is in progress is handed to _writev together.
    for (let i = 0; i < 1000; i++) mqttPacket.writeToStream(publish, stream);
    while (Buffer.concat(messages).length < want.length * 1000) await new Promise((r) => setTimeout(r, 5));
    expect(Math.max(...messages.map((m) => m.length))).toBeLessThanOrEqual(MAX_COALESCED_BYTES);
    expect(messages.length).toBeLessThan(100); // still joined, not a message per piece
    expect(Buffer.compare(Buffer.concat(messages), Buffer.concat(Array.from({ length: 1000 }, () => want)))).toBe(0);
  });

  it('cuts a joined write larger than its limit into pieces, in order, with one callback at the end', async () => {
    const seen: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        seen.push(chunk);
        setImmediate(cb);
      },
    });
    coalesceCorkedWrites(sink, 10);
    sink.cork();
    sink.write('abcdefgh');
    sink.write('ijklmnop');
    const done = new Promise((r) => sink.write('qrstuvwxyz', r));
    process.nextTick(() => sink.uncork());
    expect(await done).toBeFalsy();
    expect(seen.map((b) => b.toString())).toEqual(['abcdefghij', 'klmnopqrst', 'uvwxyz']);
  });

  it('leaves a stream that has its own _writev (a TCP or TLS socket) as it is', () => {
    const sock = new net.Socket();
    const own = (sock as unknown as { _writev: unknown })._writev;
    coalesceCorkedWrites(sock);
    expect((sock as unknown as { _writev: unknown })._writev).toBe(own);
    sock.destroy();
  });
});
