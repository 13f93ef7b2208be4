import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';
import { vi } from 'vitest';
import type { DevstreamsError } from '../../protocol/index.js';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes `data` in writes of varying size (1 to 9,000 bytes), then ends `s`. */
export function writeInPieces(s: Writable, data: Buffer): void {
  for (let i = 0; i < data.length; ) {
    const n = 1 + ((i * 7919) % 9000);
    s.write(data.subarray(i, i + n));
    i += n;
  }
  s.end();
}

/** Reads `s` (resuming it) to its end: how many bytes, and their SHA-256. */
export async function readToEnd(s: Readable): Promise<{ bytes: number; digest: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    h.update(d);
    bytes += d.length;
  });
  s.resume();
  await once(s, 'end');
  return { bytes, digest: h.digest('hex') };
}

/** Writes `payload` (then EOF) in 64 KiB slices honouring backpressure, and collects everything that comes back until EOF. */
export async function roundTrip(s: Duplex, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    s.once('end', resolve);
    s.once('error', reject);
  });
  for (let off = 0; off < payload.length; off += 65536) {
    if (!s.write(payload.subarray(off, off + 65536))) await once(s, 'drain');
  }
  s.end();
  await ended;
  return Buffer.concat(chunks);
}

/** The error a promise rejects with; fails if it resolves. */
export async function refusalOf(p: Promise<unknown>): Promise<DevstreamsError> {
  try {
    await p;
  } catch (err) {
    return err as DevstreamsError;
  }
  throw new Error('expected a refusal');
}

/**
 * Records what a Writable (a TCP or TLS socket) hands to its handle, call by call: one buffer for
 * a `_write`, the chunks of a `_writev`. One system call each on a socket.
 */
export function recordWrites(w: Writable): Buffer[][] {
  const s = w as unknown as {
    _write: (c: Buffer, e: BufferEncoding, cb: () => void) => void;
    _writev: (cs: Array<{ chunk: Buffer }>, cb: () => void) => void;
  };
  const calls: Buffer[][] = [];
  const write = s._write.bind(w);
  const writev = s._writev.bind(w);
  s._write = (c, e, cb) => (calls.push([c]), write(c, e, cb));
  s._writev = (cs, cb) => (calls.push(cs.map((x) => x.chunk)), writev(cs, cb));
  return calls;
}

/** The process.nextTick calls made while `fn` runs (synchronously). */
export function ticksDuring(fn: () => void): number {
  const spy = vi.spyOn(process, 'nextTick');
  try {
    fn();
    return spy.mock.calls.length;
  } finally {
    spy.mockRestore();
  }
}
