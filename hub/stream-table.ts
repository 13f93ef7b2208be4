import { hashSecret, type MessageSocket } from '../protocol/index.js';

/**
 * The relay's streams, from the request to a short while after their end, and the index of their
 * stream tokens by SHA-256 digest (the tokens themselves are never kept).
 */

export type Role = 'device' | 'service';

/**
 * requested: published to the device, no answer yet; accepted: the device said 200, waiting for
 * both sides; paired: bytes flow; ended: closed, refused, expired or cancelled (kept as a tombstone
 * so late token uses get 409/410 rather than 401).
 */
export type StreamState = 'requested' | 'accepted' | 'paired' | 'ended';

export interface Leg {
  role: Role;
  /** A per-stream WebSocket, or a channel of a device's multiplexed connection. */
  ws: MessageSocket;
  /** Paused because the other side's send buffer is over the high-water mark. */
  backpressured: boolean;
  closed: boolean;
}

export interface StreamEntry {
  id: string;
  device: string;
  service: string;
  /** The service token's name that asked for it (the stream history's requestedBy). */
  requestedBy: string | null;
  openedAt: number;
  expiresAt: number;
  readonly state: StreamState;
  used: Record<Role, boolean>;
  legs: Partial<Record<Role, Leg>>;
  bytesToDevice: number;
  bytesFromDevice: number;
  closedBy: Role | 'hub' | null;
  closeCode: number | null;
  closeReason: string;
  timer: NodeJS.Timeout | null;
}

export interface NewStream {
  streamId: string;
  device: string;
  service: string;
  deviceToken: string;
  serviceToken: string;
  requestedBy?: string;
  openedAt: number;
  expiresAt: number;
}

export class StreamTable {
  private readonly streams = new Map<string, StreamEntry>();
  private readonly tokens = new Map<string, { streamId: string; role: Role }>();
  private readonly digestsOf = new Map<string, string[]>();
  /**
   * Counts kept as states change, so the limits checked on every request cost O(1): ended streams
   * stay in the table for a minute, which at 100 streams/s is 6,000 entries to scan.
   */
  private live = 0;
  private handshakes = 0;
  private readonly liveByDevice = new Map<string, number>();

  add(s: NewStream): StreamEntry {
    const entry: StreamEntry = {
      id: s.streamId,
      device: s.device,
      service: s.service,
      requestedBy: s.requestedBy ?? null,
      openedAt: s.openedAt,
      expiresAt: s.expiresAt,
      state: 'requested',
      used: { device: false, service: false },
      legs: {},
      bytesToDevice: 0,
      bytesFromDevice: 0,
      closedBy: null,
      closeCode: null,
      closeReason: '',
      timer: null,
    };
    const deviceDigest = hashSecret(s.deviceToken);
    const serviceDigest = hashSecret(s.serviceToken);
    this.streams.set(s.streamId, entry);
    this.tokens.set(deviceDigest, { streamId: s.streamId, role: 'device' });
    this.tokens.set(serviceDigest, { streamId: s.streamId, role: 'service' });
    this.digestsOf.set(s.streamId, [deviceDigest, serviceDigest]);
    this.count(entry, +1);
    return entry;
  }

  /** Moves a stream to `to` (never back from ended), keeping the counts right. */
  setState(entry: StreamEntry, to: StreamState): void {
    if (entry.state === to || entry.state === 'ended') return;
    this.count(entry, -1);
    (entry as { state: StreamState }).state = to;
    this.count(entry, +1);
  }

  /** Streams not yet ended. */
  liveCount(): number {
    return this.live;
  }

  /** A device's streams not yet ended. */
  deviceLiveCount(device: string): number {
    return this.liveByDevice.get(device) ?? 0;
  }

  /** Streams requested or accepted, not yet paired or ended. */
  handshakeCount(): number {
    return this.handshakes;
  }

  get(streamId: string): StreamEntry | undefined {
    return this.streams.get(streamId);
  }

  /** The stream and role a presented token belongs to (looked up by its digest). */
  byToken(token: string): { stream: StreamEntry; role: Role } | undefined {
    const hit = this.tokens.get(hashSecret(token));
    const stream = hit ? this.streams.get(hit.streamId) : undefined;
    return hit && stream ? { stream, role: hit.role } : undefined;
  }

  delete(streamId: string): void {
    const entry = this.streams.get(streamId);
    if (!entry) return;
    if (entry.timer) clearTimeout(entry.timer);
    this.count(entry, -1);
    this.streams.delete(streamId);
    for (const d of this.digestsOf.get(streamId) ?? []) this.tokens.delete(d);
    this.digestsOf.delete(streamId);
  }

  all(): StreamEntry[] {
    return [...this.streams.values()];
  }

  private count(entry: StreamEntry, by: 1 | -1): void {
    if (entry.state === 'ended') return;
    this.live += by;
    const n = (this.liveByDevice.get(entry.device) ?? 0) + by;
    if (n > 0) this.liveByDevice.set(entry.device, n);
    else this.liveByDevice.delete(entry.device);
    if (entry.state === 'requested' || entry.state === 'accepted') this.handshakes += by;
  }
}
