import type { Logger } from '../protocol/index.js';

/**
 * Tells the operator when a device's MQTT connection is taken over by a new connection with the
 * same device id (the broker keeps one per device and the newest wins, MQTT-3.1.4-2): one warn line
 * naming the device and both peers. Several takeovers of one device within `windowMs` are almost
 * always two agents with the same id (the same config on two boards, or an agent started by hand
 * beside the service), which then take the connection from each other about once a second: that is
 * said plainly, at most once per `repeatMs` per device, and the single takeover lines drop to debug
 * while it goes on. Memory: one small entry per device taken over within `repeatMs`, at most 10,000.
 */
export interface TakeoverWatchOptions {
  log: Logger;
  /** Takeovers of one device within `windowMs` that mean two agents (default 3 within 60 s). */
  count?: number;
  windowMs?: number;
  /** The least time between two "two agents" lines for one device (default 10 min). */
  repeatMs?: number;
  now?: () => number;
}

interface DeviceTakeovers {
  /** When each takeover happened, within the window, oldest first. */
  at: number[];
  /** The peers seen taking over in the window, newest last (at most MAX_PEERS). */
  peers: string[];
  /** Takeovers since the last "two agents" line (the ones told at debug included). */
  sinceHint: number;
  lastHintAt: number | undefined;
}

const MAX_PEERS = 4;
const MAX_DEVICES = 10_000;

export class TakeoverWatch {
  private readonly log: Logger;
  private readonly count: number;
  private readonly windowMs: number;
  private readonly repeatMs: number;
  private readonly now: () => number;
  private readonly devices = new Map<string, DeviceTakeovers>();

  constructor(opts: TakeoverWatchOptions) {
    this.log = opts.log;
    this.count = opts.count ?? 3;
    this.windowMs = opts.windowMs ?? 60_000;
    this.repeatMs = opts.repeatMs ?? 600_000;
    this.now = opts.now ?? Date.now;
  }

  /** A new connection (from `address`) for `device` replaced the one from `previous`. */
  takenOver(device: string, previous: string, address: string): void {
    const now = this.now();
    this.prune(now);
    const d = this.devices.get(device) ?? { at: [], peers: [], sinceHint: 0, lastHintAt: undefined };
    this.devices.delete(device); // re-inserted last: the map stays in order of the latest takeover
    this.devices.set(device, d);
    d.at = d.at.filter((t) => now - t < this.windowMs);
    d.at.push(now);
    d.sinceHint++;
    for (const p of [previous, address]) {
      d.peers = d.peers.filter((x) => x !== p);
      d.peers.push(p);
    }
    if (d.peers.length > MAX_PEERS) d.peers = d.peers.slice(-MAX_PEERS);
    const repeated = d.at.length >= this.count;
    const fields = { device, previous, address };
    if (repeated && d.lastHintAt !== undefined && now - d.lastHintAt < this.repeatMs) {
      this.log.debug(fields, 'another connection for the device took over');
      return;
    }
    this.log.warn(fields, 'another connection for the device took over');
    if (!repeated) return;
    this.log.warn(
      {
        device,
        takeovers: d.at.length,
        windowSec: Math.round(this.windowMs / 1000),
        ...(d.lastHintAt !== undefined ? { sinceLastSaid: d.sinceHint } : {}),
        peers: d.peers.join(' '),
        hint: `two agents seem to use device id ${device} and take its connection from each other; run one agent per device id (give each device its own with devstreams hub add-device)`,
      },
      'two agents seem to share this device id',
    );
    d.lastHintAt = now;
    d.sinceHint = 0;
  }

  /** Forgets devices with no takeover for `repeatMs` (so their hint may be said again), and the oldest past MAX_DEVICES. */
  private prune(now: number): void {
    for (const [device, d] of this.devices) {
      const last = d.at[d.at.length - 1] ?? 0;
      if (now - last < Math.max(this.windowMs, this.repeatMs) && this.devices.size <= MAX_DEVICES) break; // in order of the latest takeover
      this.devices.delete(device);
    }
  }
}
