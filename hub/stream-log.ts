import type { Logger, StreamRecord } from '../protocol/index.js';

/**
 * Every stream's end, refused and timed-out requests included: one JSON log line
 * (`msg: "stream ended"`) and a record kept for `GET /api/v1/streams` (the newest 1,000, in a ring).
 */
export class StreamLog {
  private readonly capacity: number;
  private readonly ring: (StreamRecord | undefined)[];
  private next = 0;
  private size = 0;
  private readonly log: Logger;

  constructor(opts: { log: Logger; capacity?: number }) {
    this.capacity = opts.capacity ?? 1000;
    this.ring = new Array<StreamRecord | undefined>(this.capacity);
    this.log = opts.log;
  }

  add(record: StreamRecord): void {
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
    this.log.info(
      {
        streamId: record.streamId,
        device: record.device,
        service: record.service,
        result: record.result,
        status: record.status,
        code: record.code,
        ...(record.result !== 'ok' ? { reason: record.reason } : {}),
        closedBy: record.closedBy,
        durationMs: record.durationMs,
        bytesToDevice: record.bytesToDevice,
        bytesFromDevice: record.bytesFromDevice,
      },
      'stream ended',
    );
  }

  /** Newest first. */
  list(): StreamRecord[] {
    const out: StreamRecord[] = [];
    for (let i = 1; i <= this.size; i++) {
      const r = this.ring[(this.next - i + this.capacity) % this.capacity];
      if (r) out.push(r);
    }
    return out;
  }
}
