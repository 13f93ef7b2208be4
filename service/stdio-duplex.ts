import { Duplex, type Readable, type Writable } from 'node:stream';

/**
 * Standard input and output as the one duplex a bridge takes (`devstreams connect`), handing each
 * chunk on as it is.
 *
 * `Duplex.from({ readable, writable })` did this before, in paused mode: it took what standard input
 * held with `read()`, which joins everything buffered into a new buffer. So a chunk lost the room
 * for the frame headers it was read with (protocol/headroom.ts) and was copied once more, and
 * standard input, never flowing, read into the small buffer kept for a paused socket (64 KiB,
 * protocol/tcp-read-buffer.ts). Here standard input flows and each chunk is pushed as it came;
 * a full buffer pauses it until the bridge reads again. Writes go to standard output in order,
 * the pieces of one message written together (corked, one system call) when they arrive together.
 *
 * The end of the stream ends standard output; destroying this destroys both.
 */
export class StdioDuplex extends Duplex {
  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
  ) {
    super({ allowHalfOpen: true });
    input.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) input.pause();
    });
    input.once('end', () => this.push(null));
    input.on('error', (err) => this.destroy(err));
    output.on('error', (err) => this.destroy(err));
    input.pause(); // until the bridge first reads
  }

  override _read(): void {
    this.input.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.output.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const out = this.output;
    out.cork();
    for (let i = 0; i < chunks.length - 1; i++) out.write(chunks[i]!.chunk);
    out.write(chunks[chunks.length - 1]!.chunk, cb);
    out.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.output.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.input.destroy();
    this.output.destroy();
    cb(err);
  }
}
