import { collectGarbage } from './gc-tuning.js';
import type { Logger } from './logger.js';

/** How long a process is idle before it gives memory back. */
export const IDLE_RECLAIM_MS = 10_000;

/**
 * Gives memory back when a long-running process goes idle (the agent; `devstreams forward`): one
 * full garbage collection `idleMs` after a poke (the agent came online, a stream closed) when
 * nothing is open, none while something is. V8 grows its young generation during start-up and keeps
 * the garbage of a busy period; its own memory reducer may not run for minutes in a process that
 * mostly sleeps, and a board's memory is the scarce resource. One collection costs 0.1-0.25 s of
 * CPU here, once per idle period. Measured (node bench/idle.mjs, Node 24): a fresh agent 94.9 ->
 * 82.5 MB RSS, an agent after work 256.5 -> 180.6 MB. Never in the SDK: it changes no global
 * setting of its user's process.
 */
export class IdleMemoryReclaimer {
  private readonly idleMs: number;
  private readonly busy: () => boolean;
  private readonly collect: () => number | null;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: { busy: () => boolean; log: Logger; idleMs?: number; collect?: () => number | null }) {
    this.idleMs = opts.idleMs ?? IDLE_RECLAIM_MS;
    this.busy = opts.busy;
    this.collect = opts.collect ?? collectGarbage;
    this.log = opts.log;
  }

  /** Something changed (the agent came online, a stream opened or closed): (re)starts the wait. */
  poke(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.busy()) return;
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
    const before = process.memoryUsage.rss();
    const ms = this.collect();
    if (ms === null) return;
    this.log.debug({ gcMs: Math.round(ms), rssBefore: before, rssAfter: process.memoryUsage.rss() }, 'idle: memory given back');
  }
}
