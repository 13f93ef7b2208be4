import type { Writable } from 'node:stream';

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };
type WritableInternals = Writable & {
  _write(chunk: Buffer, encoding: BufferEncoding | 'buffer', cb: (err?: Error | null) => void): void;
  _writev?: (chunks: Chunk[], cb: (err?: Error | null) => void) => void;
};

/**
 * Largest chunk (and so WebSocket frame) made by joining writes: well under the 64 KiB the hub's
 * MQTT endpoint accepts per message (hub/server.ts). A burst of answers (1,000 streams opened at
 * once) is buffered behind a write in progress and handed to `_writev` whole; joined into one frame
 * it went past that limit, and the hub closed the agent's MQTT connection (1009), losing the answers.
 */
export const MAX_COALESCED_BYTES = 32 * 1024;

/**
 * Makes `stream` pass what was written while it was corked to its `_write` as one chunk (or, past
 * MAX_COALESCED_BYTES, as few chunks of at most that size as it takes, in order).
 *
 * mqtt-packet corks its stream and writes each packet in pieces (fixed header, length, topic, packet
 * id, payload), uncorking on the next tick. A stream with no `_writev` of its own (ws's
 * `createWebSocketStream`, the hub's packet guard) hands every piece on alone, and over MQTT on a
 * WebSocket each became its own WebSocket frame, TLS record and system call: six for one PUBLISH.
 * MQTT over WebSockets lets a frame carry any part of the byte stream (MQTT 3.1.1 section 6), so
 * one frame for what one tick wrote is correct, and so is cutting it anywhere. Streams that have a
 * `_writev` are left as they are.
 */
export function coalesceCorkedWrites(stream: Writable, maxBytes: number = MAX_COALESCED_BYTES): void {
  const s = stream as WritableInternals;
  if (typeof s._writev === 'function') return;
  s._writev = function (this: WritableInternals, chunks: Chunk[], cb: (err?: Error | null) => void): void {
    const bufs = chunks.map((c) => (typeof c.chunk === 'string' ? Buffer.from(c.chunk, c.encoding) : c.chunk));
    const whole = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
    if (whole.length <= maxBytes) return this._write(whole, 'buffer', cb);
    let offset = 0;
    const next = (err?: Error | null): void => {
      if (err || offset >= whole.length) return cb(err);
      const piece = whole.subarray(offset, offset + maxBytes);
      offset += piece.length;
      this._write(piece, 'buffer', next);
    };
    next();
  };
}
