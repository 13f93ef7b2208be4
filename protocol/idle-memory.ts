import { collectGarbage } from './gc-tuning.js';
import type { Logger } from './logger.js';
import { GLIBC_HEAP_THRESHOLDS, loadMallocTrim, type HeapThresholds } from './malloc-trim.js';

/** How long a process is idle before it gives memory back. */
export const IDLE_RECLAIM_MS = 10_000;
/**
 * From the collection to glibc's trim. V8 frees a dead ArrayBuffer's memory on a background thread
 * after the collection that found it dead: trimmed at once, glibc had not got it back yet (a script
 * that dropped 350 MB of buffers: 472 -> 436 MB trimmed at once, -> 87 MB trimmed 0.5 s later).
 */
export const TRIM_AFTER_GC_MS = 1_000;

/**
 * Gives memory back when a long-running process goes idle (the agent, `devstreams forward`; the hub
 * without the collection): one full garbage collection `idleMs` after a poke (the agent came
 * online, a stream closed, the agent's multiplexed connection closed a minute after its last
 * stream) when nothing is open, none while something is, then glibc's malloc_trim a second later.
 * V8 grows its young generation during start-up and keeps the garbage of a busy period; its own
 * memory reducer may not run for minutes in a process that mostly sleeps, and a board's memory is
 * the scarce resource. The collection frees the busy period's buffers to glibc, which keeps most of
 * them resident until malloc_trim (protocol/malloc-trim.ts). The agent's collection also drops the
 * bytecode of functions not running (protocol/gc-tuning.ts collectGarbage; `devstreams forward`
 * keeps it, service/forward-command.ts). It costs a fresh agent 19-20 ms here (9-11 ms before it
 * dropped bytecode), an agent after 256 MiB each way 50-52 ms (22-27 before; that agent, `node
 * dist/devstreams.mjs`, then idles at 79-80 MB against 97), a trim 2-30 ms, once per idle period
 * (the agent's twice, when its multiplexed connection closes in it). Measured (node bench/idle.mjs,
 * Node 24): the collection took a fresh agent from 94.9 to 82.5 MB RSS and an agent after work from
 * 256.5 to 180.6 MB; the trim an agent after work from 225.6 to 74.2 MB. Never in the SDK: it
 * changes no global setting of its user's process.
 */
export class IdleMemoryReclaimer {
  private readonly idleMs: number;
  private readonly busy: () => boolean;
  /** null: no collection, only the trim (the hub: see the constructor). */
  private readonly collect: (() => number | null) | null;
  private readonly trim: () => boolean | null;
  private readonly keepWhileBusy: () => Readonly<HeapThresholds> | null;
  private readonly setThresholds: (t: Readonly<HeapThresholds>) => boolean | null;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private toldNoTrim = false;
  /** The thresholds this reclaimer last set (null: glibc's own, never changed). */
  private thresholdsSet: Readonly<HeapThresholds> | null = null;

  constructor(opts: {
    busy: () => boolean;
    log: Logger;
    idleMs?: number;
    /**
     * The full collection; default V8's (protocol/gc-tuning.ts). null: none, glibc's trim alone. A
     * forced collection also shrinks V8's heap and the limits that pace its collections, which the
     * next busy period then grows back with more collections: the hub, between two transfers
     * after an idle period, cost about a third more CPU per byte with it. The relays' fixed growing
     * factor (protocol/gc-tuning.ts, fifteenth round) did not make that go away: `forward`,
     * receiving after an idle period, still ran 7-24 mark-compacts per 512 MiB with its collection
     * against 0-7 without. The agent and `forward` take that for what the collection gives back
     * (the agent's young generation after start-up; `forward` kept 123-199 MB idle without it,
     * against 85); the hub, carrying every stream, trims only, which gives back nearly as much
     * (docs/OPERATIONS.md "Agent footprint").
     */
    collect?: (() => number | null) | null;
    trim?: () => boolean | null;
    /**
     * While something is open, glibc's heap thresholds: how much freed memory it keeps at its heap's
     * top instead of giving it back at once, and from what size an allocation is mapped on its own
     * (protocol/malloc-trim.ts RELAY_HEAP_THRESHOLDS); null, the default: glibc's own. Read at each
     * poke while busy, so a reload can change it (the agent's `runtime.gc`). The idle trim gives
     * the kept memory back either way.
     */
    keepWhileBusy?: () => Readonly<HeapThresholds> | null;
    /** Sets glibc's thresholds (default: the native helper's mallopt); null when unavailable. */
    setThresholds?: (t: Readonly<HeapThresholds>) => boolean | null;
  }) {
    this.idleMs = opts.idleMs ?? IDLE_RECLAIM_MS;
    this.busy = opts.busy;
    this.collect = opts.collect === undefined ? collectGarbage : opts.collect;
    this.trim = opts.trim ?? (() => this.mallocTrim());
    this.keepWhileBusy = opts.keepWhileBusy ?? (() => null);
    this.setThresholds = opts.setThresholds ?? ((t) => this.mallocThresholds(t));
    this.log = opts.log;
  }

  /** Something changed (the agent came online, a stream opened or closed): (re)starts the wait, and cancels a pending trim. */
  poke(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.busy()) return this.holdWhileBusy();
    this.timer = setTimeout(() => this.fire(), this.idleMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(): void {
    this.timer = undefined;
    if (this.stopped || this.busy()) return;
    const rssBefore = process.memoryUsage.rss();
    if (!this.collect) return this.giveBack(rssBefore, null);
    const gcMs = this.collect();
    this.timer = setTimeout(() => this.giveBack(rssBefore, gcMs), TRIM_AFTER_GC_MS);
    this.timer.unref();
  }

  /** Sets glibc's thresholds for a busy period when they are not already what keepWhileBusy asks. */
  private holdWhileBusy(): void {
    const want = this.keepWhileBusy();
    const now = this.thresholdsSet;
    if (want?.trim === now?.trim && want?.mmap === now?.mmap) return;
    const t = want ?? GLIBC_HEAP_THRESHOLDS;
    const ok = this.setThresholds(t);
    if (ok === null) return; // unavailable: said once, by mallocThresholds
    this.thresholdsSet = want; // refused (set: false) is said once too, not at every stream
    this.log.info({ trimThreshold: t.trim, mmapThreshold: t.mmap, set: ok }, "busy: glibc's heap thresholds");
  }

  private mallocThresholds(t: Readonly<HeapThresholds>): boolean | null {
    const load = loadMallocTrim();
    if (load.thresholds) return load.thresholds(t.trim, t.mmap);
    this.sayNoHelper(load.reason);
    return null;
  }

  private sayNoHelper(reason: string): void {
    if (!this.toldNoTrim) this.log.info({ reason }, 'glibc heap not tuned or trimmed (native helper unavailable)');
    this.toldNoTrim = true;
  }

  /** glibc's malloc_trim through the native helper: true if pages went back, null if unavailable (said once). */
  private mallocTrim(): boolean | null {
    const load = loadMallocTrim();
    if (load.trim) return load.trim();
    this.sayNoHelper(load.reason);
    return null;
  }

  private giveBack(rssBefore: number, gcMs: number | null): void {
    this.timer = undefined;
    if (this.stopped || this.busy()) return;
    const started = process.hrtime.bigint();
    const trimmed = this.trim();
    const trimMs = Number(process.hrtime.bigint() - started) / 1e6;
    this.log.info(
      { gcMs: gcMs === null ? null : Math.round(gcMs), trimmed, trimMs: Math.round(trimMs), rssBefore, rssAfter: process.memoryUsage.rss() },
      'idle: memory given back',
    );
  }
}
