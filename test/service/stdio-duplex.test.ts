import { once } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { StdioDuplex } from '../../service/stdio-duplex.js';

// service/stdio-duplex.ts: `devstreams connect`'s standard input and output as one duplex.

/** A writable that records each batch it is handed (one chunk, or several through _writev). */
function recorder(): { out: Writable; batches: Buffer[][] } {
  const batches: Buffer[][] = [];
  const out = new Writable({
    write(chunk: Buffer, _e, cb) {
      batches.push([chunk]);
      cb();
    },
    writev(chunks, cb) {
      batches.push(chunks.map((c) => c.chunk as Buffer));
      cb();
    },
  });
  return { out, batches };
}

describe('StdioDuplex', () => {
  it('hands on each chunk of standard input as the same buffer, in order, never joined', async () => {
    const input = new PassThrough();
    const parts = [Buffer.from('one'), Buffer.from('two'), Buffer.from('three')];
    for (const p of parts) input.write(p); // all three waiting before anyone reads
    input.end();
    const d = new StdioDuplex(input, recorder().out);
    const got: Buffer[] = [];
    d.on('data', (c: Buffer) => got.push(c));
    await once(d, 'end');
    expect(got).toHaveLength(3);
    got.forEach((c, i) => expect(c).toBe(parts[i])); // the very objects: their headroom marks go with them
  });

  it('stops reading standard input while its reader is behind, and goes on when it reads', async () => {
    const input = new PassThrough();
    const d = new StdioDuplex(input, recorder().out);
    d.resume();
    d.pause();
    for (let i = 0; i < 64; i++) input.write(Buffer.alloc(16 * 1024));
    await new Promise((r) => setImmediate(r));
    expect(input.isPaused()).toBe(true);
    expect(input.readableLength).toBeGreaterThan(0); // held back in standard input, not piled up here
    let n = 0;
    d.on('data', (c: Buffer) => (n += c.length));
    d.resume();
    input.end();
    await once(d, 'end');
    expect(n).toBe(64 * 16 * 1024);
  });

  it('writes the pieces that arrive together in one batch, and ends standard output at the end', async () => {
    const { out, batches } = recorder();
    const d = new StdioDuplex(new PassThrough(), out);
    d.cork();
    d.write(Buffer.from('a'));
    d.write(Buffer.from('b'));
    d.write(Buffer.from('c'));
    d.uncork();
    d.end();
    await once(out, 'finish');
    expect(batches.map((b) => Buffer.concat(b).toString())).toEqual(['abc']);
  });

  it('fails when standard output fails, and destroys both when destroyed', async () => {
    const input = new PassThrough();
    const { out } = recorder();
    const d = new StdioDuplex(input, out);
    const failed = once(d, 'error');
    out.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    const [err] = (await failed) as [NodeJS.ErrnoException];
    expect(err.code).toBe('EPIPE');
    expect(input.destroyed).toBe(true);
    expect(out.destroyed).toBe(true);
  });
});
