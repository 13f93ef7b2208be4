/**
 * Keyed token buckets: each key (a service token's name, a device id) may take `ratePerSecond`
 * on average, with bursts up to `burst`. Memory is bounded: a bucket that has refilled completely
 * holds no information and is dropped when the map grows past `maxKeys`.
 */
export interface RateLimiterOptions {
  ratePerSecond: number;
  /** Bucket capacity; default: one second's worth, at least 1. */
  burst?: number;
  /** Above this many keys, full buckets are pruned (default 10,000). */
  maxKeys?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(opts: RateLimiterOptions) {
    if (!(opts.ratePerSecond > 0)) throw new RangeError('ratePerSecond must be positive');
    this.ratePerSecond = opts.ratePerSecond;
    this.burst = opts.burst ?? Math.max(1, opts.ratePerSecond);
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** Takes one token for `key`; false when its bucket is empty (the caller refuses). */
  take(key: string): boolean {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSecond);
      b.at = now;
    } else {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Number of keys tracked (for tests). */
  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.ratePerSecond >= this.burst) this.buckets.delete(key);
    }
    // Still full of active keys: forget the oldest (a forgotten key starts with a full bucket).
    for (const key of this.buckets.keys()) {
      if (this.buckets.size < this.maxKeys) break;
      this.buckets.delete(key);
    }
  }
}
