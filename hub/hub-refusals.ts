import { newStreamId, type DevstreamsError, type Logger } from '../protocol/index.js';
import type { StreamLog } from './stream-log.js';

/** A stream request the hub refused itself: what it named, and the name of the token that asked. */
export interface RefusedRequest {
  /** A checked device id (protocol isDeviceId): the request's, whether or not such a device exists. */
  device: string;
  /** The service as the request named it (checked by OpenStreamBodySchema). */
  service: string;
  /** The service token's name, never the token. */
  requestedBy: string;
}

/** Tokens kept at once in each per-token map below; past it, the oldest are forgotten. */
const MAX_TOKENS = 1000;

/** Sets `key` as the newest entry of `map` (its order is the order of the last sets), forgetting the oldest past MAX_TOKENS. */
function setNewest<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  if (map.size >= MAX_TOKENS) map.delete(map.keys().next().value!);
  map.set(key, value);
}

/**
 * How many of the hub's own refusals one token gets history records for per minute; past that they
 * are counted and summed in one log line a minute, as over-rate requests are. The token rate alone
 * (100/s by default) let a token scoped to one device write 100 records a second for devices it may
 * not reach or that do not exist, with no device involved, and so push the fleet's real records out
 * of `history.maxRecords` (10,000) in under two minutes. 60 a minute is more than a person or a
 * retrying script makes; it would take one token nearly three hours to push out 10,000 records.
 */
export const REFUSAL_RECORDS_PER_TOKEN_PER_MINUTE = 60;

/**
 * Stream requests the hub refuses itself, after the service token was accepted (README "Observe
 * the fleet"; ARCHITECTURE "Observability"), recorded as a device's refusal is: scope (403
 * FORBIDDEN), shutting down, unknown device (404), offline device (503), the device's limits
 * (429). Each gets one record in the stream history (result `refused`, a stream id of its own, no
 * duration, no bytes), which counts it in `devstreams_hub_streams_total` and writes its one log
 * line (the stream log's `stream ended`, at warn for FORBIDDEN: a token tried outside its scope).
 *
 * A request over its token's rate is different: the token bucket is what bounds how fast one token
 * can make the hub write records, so such a refusal writes none. It is counted (`overRate`) and
 * logged at most once per token per `overRateLogIntervalMs`, with the number refused meanwhile.
 * Requests without a valid token, and malformed ones, never reach this class.
 */
export class HubRefusals {
  private readonly streamLog: StreamLog;
  private readonly log: Logger;
  private readonly countOverRate: () => void;
  private readonly intervalMs: number;
  private readonly now: () => number;
  /** Per token name: when its last over-rate line was logged, and how many were refused since. */
  private readonly overRateSeen = new Map<string, { loggedAt: number; unlogged: number }>();
  /** Per token name: the minute its refusal records are counted in, and how many it has had. */
  private readonly recordBudget = new Map<string, { since: number; records: number }>();
  private readonly recordsPerMinute: number;

  constructor(opts: {
    streamLog: StreamLog;
    log: Logger;
    /** Counts one over-rate refusal (the metrics: `devstreams_hub_streams_total{result="refused"}`). */
    overRate?: () => void;
    /** Least time between two over-rate log lines for one token (default 60 s). */
    overRateLogIntervalMs?: number;
    /** Refusal records per token per minute (default REFUSAL_RECORDS_PER_TOKEN_PER_MINUTE). */
    recordsPerMinute?: number;
    now?: () => number;
  }) {
    this.streamLog = opts.streamLog;
    this.log = opts.log.child({ component: 'streams' });
    this.countOverRate = opts.overRate ?? (() => {});
    this.intervalMs = opts.overRateLogIntervalMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.recordsPerMinute = opts.recordsPerMinute ?? REFUSAL_RECORDS_PER_TOKEN_PER_MINUTE;
  }

  /** Records a refusal of the hub's own: a history record, the metric and one log line. */
  refused(request: RefusedRequest, err: DevstreamsError): void {
    const at = this.now();
    if (!this.withinBudget(request.requestedBy, at)) {
      return this.summarised(request.requestedBy, err, 'stream request refused, not recorded: its token had its refusal records for this minute');
    }
    this.streamLog.add(
      {
        streamId: newStreamId(),
        device: request.device,
        service: request.service,
        requestedBy: request.requestedBy,
        result: 'refused',
        status: err.status,
        code: err.code,
        reason: err.reason,
        closedBy: 'none',
        openedAt: at,
        closedAt: at,
        durationMs: 0,
        bytesToDevice: 0,
        bytesFromDevice: 0,
      },
      err.code === 'FORBIDDEN' ? 'warn' : 'info',
    );
  }

  /** True while `token` has records left this minute (and takes one). */
  private withinBudget(token: string, now: number): boolean {
    let b = this.recordBudget.get(token);
    if (!b || now - b.since >= 60_000) {
      b = { since: now, records: 0 };
      setNewest(this.recordBudget, token, b);
    }
    return ++b.records <= this.recordsPerMinute;
  }

  /** A request over its token's rate (429 LIMIT_EXCEEDED): counted; logged at most once per interval per token. */
  overRate(token: string, err: DevstreamsError): void {
    this.summarised(token, err, 'stream request refused: over its token rate');
  }

  /** Counted, and one log line per token per interval with how many there were since the last. */
  private summarised(token: string, err: DevstreamsError, msg: string): void {
    this.countOverRate();
    const now = this.now();
    const seen = this.overRateSeen.get(token);
    if (seen && now - seen.loggedAt < this.intervalMs) {
      seen.unlogged++;
      return;
    }
    this.log.warn(
      { requestedBy: token, code: err.code, reason: err.reason, ...(seen?.unlogged ? { refusedSinceLastLine: seen.unlogged } : {}) },
      msg,
    );
    setNewest(this.overRateSeen, token, { loggedAt: now, unlogged: 0 });
  }
}
