import type { HubLimits } from './config.js';
import { RateLimiter } from './rate-limit.js';
import { RetryableError } from './retryable-error.js';

/**
 * Retry-After of a refusal by a stream count (streams per device, handshakes in flight): a stream
 * being set up ends within the join deadline, an open one whenever it ends; a few seconds is a fair
 * first wait.
 */
const COUNT_RETRY_AFTER_SEC = 5;

/** Retry-After of a refusal by a rate: when the bucket holds one request again. */
function rateRetryAfterSec(ratePerSecond: number): number {
  return Math.max(1, Math.ceil(1 / ratePerSecond));
}

/** What the limits need to know about streams in flight (the relay's table). */
export interface StreamCounts {
  deviceStreamCount(device: string): number;
  handshakeCount(): number;
}

type StreamLimitSettings = Pick<
  HubLimits,
  'streamRequestsPerTokenPerSecond' | 'streamRequestsPerDevicePerSecond' | 'streamsPerDevice' | 'pendingHandshakes'
>;

/**
 * Admission of stream requests: per service token and per device request rates (token buckets),
 * streams per device, and handshakes in flight hub-wide. Over a limit -> 429 LIMIT_EXCEEDED whose
 * reason names the limit (the hub.yaml setting), so an operator knows what to raise.
 */
export class StreamLimits {
  private readonly limits: StreamLimitSettings;
  private readonly counts: StreamCounts;
  private readonly perToken: RateLimiter;
  private readonly perDevice: RateLimiter;

  constructor(opts: { limits: StreamLimitSettings; counts: StreamCounts; now?: () => number }) {
    this.limits = opts.limits;
    this.counts = opts.counts;
    const now = opts.now ?? Date.now;
    this.perToken = new RateLimiter({ ratePerSecond: opts.limits.streamRequestsPerTokenPerSecond, now });
    this.perDevice = new RateLimiter({ ratePerSecond: opts.limits.streamRequestsPerDevicePerSecond, now });
  }

  /** A stream request by the service token named `token` (checked before anything else about the request). */
  admitToken(token: string): void {
    if (!this.perToken.take(token)) {
      throw new RetryableError(
        'LIMIT_EXCEEDED',
        `too many stream requests with service token "${token}" (limits.streamRequestsPerTokenPerSecond: ${this.limits.streamRequestsPerTokenPerSecond}/s)`,
        rateRetryAfterSec(this.limits.streamRequestsPerTokenPerSecond),
      );
    }
  }

  /** A stream request to a registered, online device (checked before the device is asked). */
  admitDevice(device: string): void {
    if (!this.perDevice.take(device)) {
      throw new RetryableError(
        'LIMIT_EXCEEDED',
        `too many stream requests to device "${device}" (limits.streamRequestsPerDevicePerSecond: ${this.limits.streamRequestsPerDevicePerSecond}/s)`,
        rateRetryAfterSec(this.limits.streamRequestsPerDevicePerSecond),
      );
    }
    const open = this.counts.deviceStreamCount(device);
    if (open >= this.limits.streamsPerDevice) {
      throw new RetryableError(
        'LIMIT_EXCEEDED',
        `device "${device}" has ${open} streams open or being set up (limits.streamsPerDevice: ${this.limits.streamsPerDevice})`,
        COUNT_RETRY_AFTER_SEC,
      );
    }
    const pending = this.counts.handshakeCount();
    if (pending >= this.limits.pendingHandshakes) {
      throw new RetryableError(
        'LIMIT_EXCEEDED',
        `the hub has ${pending} stream handshakes in progress (limits.pendingHandshakes: ${this.limits.pendingHandshakes})`,
        COUNT_RETRY_AFTER_SEC,
      );
    }
  }
}
