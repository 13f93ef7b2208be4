import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import type { DevstreamsError } from '../../protocol/index.js';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

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
