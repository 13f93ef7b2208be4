import type { Writable } from 'node:stream';

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };
type WritableInternals = Writable & {
  _write(chunk: Buffer, encoding: BufferEncoding | 'buffer', cb: (err?: Error | null) => void): void;
  _writev?: (chunks: Chunk[], cb: (err?: Error | null) => void) => void;
};

/**
 * Makes `stream` pass what was written while it was corked to its `_write` as one chunk.
 *
 * mqtt-packet corks its stream and writes each packet in pieces (fixed header, length, topic, packet
 * id, payload), uncorking on the next tick. A stream with no `_writev` of its own (ws's
 * `createWebSocketStream`, the hub's packet guard) hands every piece on alone, and over MQTT on a
 * WebSocket each became its own WebSocket frame, TLS record and system call: six for one PUBLISH.
 * MQTT over WebSockets lets a frame carry any part of the byte stream (MQTT 3.1.1 section 6), so
 * one frame for what one tick wrote is correct. Streams that have a `_writev` are left as they are.
 */
export function coalesceCorkedWrites(stream: Writable): void {
  const s = stream as WritableInternals;
  if (typeof s._writev === 'function') return;
  s._writev = function (this: WritableInternals, chunks: Chunk[], cb: (err?: Error | null) => void): void {
    const bufs = chunks.map((c) => (typeof c.chunk === 'string' ? Buffer.from(c.chunk, c.encoding) : c.chunk));
    this._write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs), 'buffer', cb);
  };
}
