/**
 * Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential
 * Backoff And Jitter"): attempt n waits a uniformly random time in [0, min(maxMs, initialMs * 2^n)).
 * Never gives up; `reset()` after a connection that worked starts again from the smallest ceiling.
 */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  private readonly random: () => number;
  private n = 0;

  constructor(opts: { initialMs: number; maxMs: number; random?: () => number }) {
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs)) {
      throw new RangeError(`backoff needs 0 < initialMs <= maxMs (got ${opts.initialMs}, ${opts.maxMs})`);
    }
    this.initialMs = opts.initialMs;
    this.maxMs = opts.maxMs;
    this.random = opts.random ?? Math.random;
  }

  /** Attempts since the last reset. */
  get attempt(): number {
    return this.n;
  }

  /** The ceiling of attempt `n`: min(maxMs, initialMs * 2^n). */
  ceiling(n: number = this.n): number {
    // 2^n overflows to Infinity long after it passed any cap, so no clamp on n is needed.
    return Math.min(this.maxMs, this.initialMs * 2 ** n);
  }

  /** The delay before the next attempt (and counts the attempt). */
  next(): number {
    const delay = Math.floor(this.random() * this.ceiling());
    this.n++;
    return delay;
  }

  reset(): void {
    this.n = 0;
  }
}
