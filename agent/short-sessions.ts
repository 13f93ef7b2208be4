import type { Logger } from '../protocol/index.js';

/**
 * Notices the control channel being closed by the hub, again and again, soon after it connected:
 * what an agent sees when another agent connects with the same device id. The hub keeps one
 * connection per device and the newest wins, so two agents take the connection from each other
 * about once a reconnect delay. MQTT 3.1.1 has no DISCONNECT from the server, so the agent cannot
 * be told; it only sees its connection end without a local cause (its own stop, a keep-alive
 * timeout or a transport error). A hub restart or a flaky link ends sessions too, but rarely
 * several within a minute, each a few seconds after connecting. The hint says "may", and is logged
 * at most once per `repeatMs`.
 */
export interface ShortSessionOptions {
  log: Logger;
  deviceId: string;
  /** A session closed by the hub within this long of connecting counts (default 10 s). */
  shortMs?: number;
  /** This many counted sessions ... (default 3) */
  count?: number;
  /** ... within this window log the hint (default 60 s). */
  windowMs?: number;
  /** The least time between two hints (default 10 min). */
  repeatMs?: number;
  now?: () => number;
}

export class ShortSessions {
  private readonly log: Logger;
  private readonly deviceId: string;
  private readonly shortMs: number;
  private readonly count: number;
  private readonly windowMs: number;
  private readonly repeatMs: number;
  private readonly now: () => number;
  private connectedAt: number | undefined;
  private localCause = false;
  /** When each counted session ended, oldest first, within the window. */
  private ends: number[] = [];
  private lastHintAt: number | undefined;

  constructor(opts: ShortSessionOptions) {
    this.log = opts.log;
    this.deviceId = opts.deviceId;
    this.shortMs = opts.shortMs ?? 10_000;
    this.count = opts.count ?? 3;
    this.windowMs = opts.windowMs ?? 60_000;
    this.repeatMs = opts.repeatMs ?? 600_000;
    this.now = opts.now ?? Date.now;
  }

  /** The channel is up (subscribed). */
  connected(): void {
    this.connectedAt = this.now();
    this.localCause = false;
  }

  /** Something on this side went wrong during the session (an error event): its end is not the hub's doing. */
  localError(): void {
    this.localCause = true;
  }

  /** The session ended; `stopping`: the agent itself closed it. */
  ended(stopping: boolean): void {
    const at = this.now();
    const since = this.connectedAt;
    this.connectedAt = undefined;
    if (since === undefined || stopping || this.localCause) return;
    const lasted = at - since;
    if (lasted >= this.shortMs) return;
    this.ends = this.ends.filter((t) => at - t < this.windowMs);
    this.ends.push(at);
    if (this.ends.length < this.count) return;
    if (this.lastHintAt !== undefined && at - this.lastHintAt < this.repeatMs) return;
    this.lastHintAt = at;
    this.log.warn(
      {
        closes: this.ends.length,
        windowSec: Math.round(this.windowMs / 1000),
        lastSessionMs: lasted,
        hint:
          `another agent may be using device id ${this.deviceId} (the same config on two machines, or a second agent ` +
          'started by hand beside the service): the hub keeps one connection per device and the newest wins. ' +
          'Give each device its own id and key (devstreams hub add-device); the hub logs "two agents seem to share this device id" when it sees it',
      },
      'control channel keeps being closed by the hub soon after connecting',
    );
  }
}
