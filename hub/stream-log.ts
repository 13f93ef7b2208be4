import type { Logger, StreamQuery, StreamRecord } from '../protocol/index.js';
import type { HistoryScope } from './history-sql.js';
import type { HistoryStore } from './history-store.js';

/**
 * Every stream's end, refused and timed-out requests included (refused by the device or, once the
 * service token is valid, by the hub: hub/hub-refusals.ts): one JSON log line
 * (`msg: "stream ended"`), a record in the stream history (`GET /api/v1/streams`), and a call to
 * each listener (the metrics). A store that fails is logged, never thrown to the relay.
 */
export class StreamLog {
  private readonly log: Logger;
  private readonly store: HistoryStore;
  private readonly listeners: ((record: StreamRecord) => void)[] = [];

  constructor(opts: { log: Logger; store: HistoryStore }) {
    this.log = opts.log;
    this.store = opts.store;
  }

  /** Calls `listener` with every record added from now on. */
  onRecord(listener: (record: StreamRecord) => void): void {
    this.listeners.push(listener);
  }

  /** `level`: the log line's (warn for a refusal an operator should look at). */
  add(record: StreamRecord, level: 'info' | 'warn' = 'info'): void {
    this.log[level](
      {
        streamId: record.streamId,
        device: record.device,
        service: record.service,
        ...(record.requestedBy ? { requestedBy: record.requestedBy } : {}),
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
    try {
      this.store.insert(record);
    } catch (err) {
      this.log.error({ streamId: record.streamId, err: (err as Error).message }, 'stream record not stored');
    }
    for (const l of this.listeners) l(record);
  }

  /** Newest first, filtered (at most MAX_STREAM_QUERY_LIMIT); with `scope`, only the records it may see. */
  list(query: StreamQuery = {}, scope?: HistoryScope): StreamRecord[] {
    return this.store.query(query, scope);
  }
}
