import { Duplex } from 'node:stream';

/**
 * Sits between a device's connection and the broker and reads each MQTT packet's fixed header as
 * the bytes pass: a packet whose remaining length is over `maxPacketBytes` (or whose length field
 * is malformed) ends that connection at once, before its body is read or buffered. Aedes 1.x has
 * no packet size limit of its own (its parser would buffer up to 256 MiB).
 */
export class MqttPacketGuard extends Duplex {
  private readonly inner: Duplex;
  private readonly maxPacketBytes: number;
  private readonly onOversize: (why: string) => void;
  /** 'type': next byte is a fixed header's first byte; 'length': inside the length field; 'body': skipping. */
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private remaining = 0;
  private tripped = false;

  constructor(inner: Duplex, opts: { maxPacketBytes: number; onOversize: (why: string) => void }) {
    super({ allowHalfOpen: false });
    this.inner = inner;
    this.maxPacketBytes = opts.maxPacketBytes;
    this.onOversize = opts.onOversize;
    inner.on('data', (chunk: Buffer) => {
      const why = this.scan(chunk);
      if (why) return this.trip(why);
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.inner.destroyed) return cb();
    this.inner.write(chunk, (err) => cb(err ?? null));
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.inner.destroyed) this.inner.destroy();
    cb(err);
  }

  private trip(why: string): void {
    if (this.tripped) return;
    this.tripped = true;
    this.onOversize(why);
    this.inner.destroy();
    this.destroy();
  }

  /** Walks the chunk through the packet framing; returns a problem, or null. */
  private scan(chunk: Buffer): string | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        i++;
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else if (this.state === 'length') {
        const b = chunk[i++]!;
        this.length += (b & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes++;
        if (this.length > this.maxPacketBytes) return `MQTT packet of ${this.length}+ bytes, over the ${this.maxPacketBytes}-byte limit`;
        if (b & 0x80) {
          if (this.lengthBytes >= 4) return 'malformed MQTT remaining length';
          continue;
        }
        this.remaining = this.length;
        this.state = this.remaining > 0 ? 'body' : 'type';
      } else {
        const n = Math.min(this.remaining, chunk.length - i);
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = 'type';
      }
    }
    return null;
  }
}
