import type { Duplex } from 'node:stream';
import type { WsDuplex } from '../protocol/index.js';

/** One stream the agent holds, from the moment it passed policy until both ends are closed. */
export interface StreamEntry {
  readonly id: string;
  readonly service: string;
  /** Aborted on shutdown: stops a target connect or relay dial in progress. */
  readonly abort: AbortController;
  phase: 'setup' | 'open';
  target?: Duplex;
  relay?: WsDuplex;
  /** Settles when the stream is over and its entry removed. */
  readonly done: Promise<void>;
}

interface Internal extends StreamEntry {
  finish: () => void;
}

/**
 * The streams being set up and open: the count `limits.maxStreams` bounds, the number reported in
 * the device status, and what shutdown ends.
 */
export class StreamTable {
  private maxStreams: number;
  private emptyWaiters: Array<() => void> = [];
  private readonly entries = new Map<string, Internal>();
  private readonly onChange: (count: number) => void;
  private closing = false;

  constructor(opts: { maxStreams: number; onChange?: (count: number) => void }) {
    this.maxStreams = opts.maxStreams;
    this.onChange = opts.onChange ?? (() => {});
  }

  get size(): number {
    return this.entries.size;
  }

  get isFull(): boolean {
    return this.entries.size >= this.maxStreams;
  }

  get limit(): number {
    return this.maxStreams;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** A new limit (SIGHUP reload): applies to the next reserve(); open streams stay. */
  setLimit(maxStreams: number): void {
    this.maxStreams = maxStreams;
  }

  /** Resolves true once no stream is left, or false after `timeoutMs`. */
  waitEmpty(timeoutMs: number): Promise<boolean> {
    if (this.entries.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.emptyWaiters = this.emptyWaiters.filter((w) => w !== onEmpty);
        resolve(ok);
      };
      const onEmpty = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.emptyWaiters.push(onEmpty);
    });
  }

  async start(): Promise<void> {
    this.closing = false;
  }

  /** Takes a slot for a stream, or returns null when the table is full or shutting down. */
  reserve(id: string, service: string): StreamEntry | null {
    if (this.closing || this.isFull || this.entries.has(id)) return null;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const entry: Internal = { id, service, abort: new AbortController(), phase: 'setup', done, finish };
    this.entries.set(id, entry);
    this.onChange(this.entries.size);
    return entry;
  }

  /** Frees a stream's slot (idempotent). */
  release(entry: StreamEntry): void {
    const internal = this.entries.get(entry.id);
    if (internal !== entry) return;
    this.entries.delete(entry.id);
    internal.finish();
    if (this.entries.size === 0) for (const w of [...this.emptyWaiters]) w();
    if (!this.closing) this.onChange(this.entries.size);
  }

  /**
   * Ends every stream: setups are aborted, open streams are closed with SHUTTING_DOWN (WebSocket
   * close 1001) and their targets destroyed. Waits for them to be released, at most `graceMs`.
   */
  async stop(graceMs = 2000): Promise<void> {
    this.closing = true;
    const all = [...this.entries.values()];
    for (const e of all) {
      e.abort.abort();
      e.relay?.abort('SHUTTING_DOWN', 'agent is shutting down');
      e.target?.destroy();
    }
    if (all.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(all.map((e) => e.done)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
    for (const e of [...this.entries.values()]) this.release(e);
  }
}
