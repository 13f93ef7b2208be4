/** Rejects if `p` has not settled within `ms`: a test's waits stay bounded. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Items in arrival order; next() waits, boundedly, for the next one. */
export class Queue<T> {
  private readonly items: T[] = [];
  private readonly waiters: Array<(t: T) => void> = [];

  push(t: T): void {
    const w = this.waiters.shift();
    if (w) w(t);
    else this.items.push(t);
  }

  next(what = 'the next item', ms = 10_000): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!);
    let waiter: (t: T) => void = () => {};
    const got = new Promise<T>((resolve) => (waiter = resolve));
    this.waiters.push(waiter);
    // A waiter that timed out takes no later item.
    return within(got, ms, what).catch((err: unknown) => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
      throw err;
    });
  }

  get length(): number {
    return this.items.length;
  }
}
