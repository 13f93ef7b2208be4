import type { WebSocket } from 'ws';
import type { MuxChannel } from './mux-channel.js';
import { MUX_MAX_WINDOW_BYTES, MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES } from './mux-frames.js';

/** The payload of the tuner's pings: a pong carrying it ends a sample (a heartbeat's pong does not). */
const SAMPLE_PING = Buffer.from('devstreams-window');
/** The payload of the ping that measures the link's round trip when the connection opens, before any data queues. */
const RTT_PING = Buffer.from('devstreams-rtt');
/**
 * After a sample that grew nothing, the next waits this long (ms): on loopback, where nothing
 * grows, a sample every round trip cost eight streams 10-15 % (their pings and pongs are small
 * writes that wake each process); while windows grow, samples follow each other at once.
 */
export const SAMPLE_BACKOFF_MS = 250;

/**
 * Receive-window tuning for one multiplexed connection with window updates (subprotocol
 * devstreams.v1.mux2), after gRPC's BDP estimator. When a channel has received a quarter of its
 * window since it was last sampled, the tuner sends a WebSocket ping and counts what each channel
 * receives until the pong. The peer sends that pong behind the DATA it has already queued, so the
 * count is what the link held in flight in one round trip: a channel that received 2/3 of its
 * window or more in that time was held back by its window, which grows to twice the count, scaled
 * to the connection's idle round trip (onPong), up to MUX_MAX_WINDOW_BYTES, within the connection's
 * MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES. A channel read slowly never takes 2/3 of its window in a
 * round trip, and a paused one takes nothing, so neither grows; a channel's growth goes back to the
 * budget when it is released.
 *
 * Measured (`node bench/wan.mjs --bulk`): one stream over a 50 ms round trip, 18.3 / 18.4 MB/s up /
 * down with the fixed window, 76.8 / 84.8 with this (ssh -L over the same link: 37.4 / 34.8).
 */
export class WindowTuner {
  private readonly ws: WebSocket;
  private readonly now: () => number;
  private budget = MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES;
  /** The channels being sampled and their receivedBytes when the sample began; null between samples. */
  private sample: Map<MuxChannel, number> | null = null;
  private sentAt = 0;
  private probeSentAt = 0;
  /** No sample starts before this (ms on `now`): set after a sample that grew nothing. */
  private quietUntil = -Infinity;
  /** The shortest round trip seen (ms), first on the idle connection: the link's own, without queued data. */
  private minRttMs = Infinity;

  /** `now`: a clock in ms (performance.now; tests give their own). */
  constructor(ws: WebSocket, now: () => number = () => performance.now()) {
    this.ws = ws;
    this.now = now;
    ws.on('pong', (data: Buffer) => this.onPong(data));
    if (ws.readyState === ws.OPEN) {
      this.probeSentAt = now();
      ws.ping(RTT_PING);
    }
  }

  /** Growth the connection can still give out. */
  get budgetLeft(): number {
    return this.budget;
  }

  /** `channel` received `bytes` of DATA (already counted in its receivedBytes); a channel paused or at its limit is not sampled. */
  received(channel: MuxChannel, bytes: number): void {
    if (this.sample) {
      if (!this.sample.has(channel) && channel.canGrow) this.sample.set(channel, channel.receivedBytes - bytes);
      return;
    }
    if (this.budget <= 0 || !channel.canGrow) return;
    if (channel.receivedBytes - channel.sampledUpTo < channel.receiveWindow / 4) return;
    if (this.ws.readyState !== this.ws.OPEN) return;
    const now = this.now();
    if (now < this.quietUntil) return;
    this.sample = new Map([[channel, channel.receivedBytes]]);
    this.sentAt = now;
    this.ws.ping(SAMPLE_PING);
  }

  /** `channel` was released: its growth goes back to the budget. */
  released(channel: MuxChannel): void {
    // Capped: only this tuner takes growth out of the budget (a grow() called elsewhere gives none back).
    this.budget = Math.min(MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES, this.budget + channel.grownBytes);
    this.sample?.delete(channel);
  }

  private onPong(data: Buffer): void {
    if (data.equals(RTT_PING)) {
      this.minRttMs = Math.min(this.minRttMs, Math.max(this.now() - this.probeSentAt, 1e-3));
      return;
    }
    if (!this.sample || !data.equals(SAMPLE_PING)) return;
    const sample = this.sample;
    this.sample = null;
    // What a round trip took past the shortest one (the idle connection's, measured when it opened)
    // was spent behind queued data: a busy peer, other channels' bytes. A bigger window would only
    // queue more, so the count is scaled down to the link's own round trip and windows grow for the
    // link, not for the queue. On loopback, where a sample's round trip is all queue, nothing grows:
    // there, growth cost eight streams 5-10 % (143, 131 against 149, 145 MB/s up, `node
    // bench/per-process.mjs devstreams`) and gave one stream as much.
    const now = this.now();
    const rtt = Math.max(now - this.sentAt, 1e-3);
    let grew = false;
    this.minRttMs = Math.min(this.minRttMs, rtt);
    const unqueued = this.minRttMs / rtt;
    for (const [channel, from] of sample) {
      const bytes = channel.receivedBytes - from;
      channel.sampledUpTo = channel.receivedBytes;
      if (!channel.canGrow || bytes < (channel.receiveWindow * 2) / 3) continue;
      const target = Math.min(Math.floor(2 * bytes * unqueued), MUX_MAX_WINDOW_BYTES);
      const extra = Math.min(target - channel.receiveWindow, this.budget);
      if (extra <= 0) continue;
      const by = channel.grow(extra);
      this.budget -= by;
      grew ||= by > 0;
    }
    if (!grew) this.quietUntil = now + SAMPLE_BACKOFF_MS;
  }
}
