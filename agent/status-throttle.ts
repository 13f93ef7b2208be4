/**
 * Rate limit for the device status: `poke()` asks for a publish; it happens at once if the last one
 * was at least `minIntervalMs` ago, otherwise once at the end of the interval (with the state of
 * that moment). Several pokes within one interval give one publish.
 */
export class StatusThrottle {
  private readonly minIntervalMs: number;
  private readonly publish: () => void;
  private lastAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: { minIntervalMs: number; publish: () => void }) {
    this.minIntervalMs = opts.minIntervalMs;
    this.publish = opts.publish;
  }

  poke(): void {
    if (this.timer) return;
    const wait = this.lastAt + this.minIntervalMs - Date.now();
    if (wait <= 0) this.fire();
    else {
      this.timer = setTimeout(() => this.fire(), wait);
      this.timer.unref();
    }
  }

  /** Records a publish made outside the throttle (the one on connect). */
  published(): void {
    this.cancel();
    this.lastAt = Date.now();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(): void {
    this.timer = undefined;
    this.lastAt = Date.now();
    this.publish();
  }
}
