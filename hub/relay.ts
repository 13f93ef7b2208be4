import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ERRORS,
  LIMITS,
  RELAY_PATH_PATTERN,
  STREAM_ID_HEADER,
  WS_SUBPROTOCOL,
  bearerToken,
  startHeartbeat,
  errorCodeOfClose,
  type ErrorCode,
  type Logger,
  type MessageSocket,
  type MuxChannel,
  type StreamRecord,
} from '../protocol/index.js';
import { refuseUpgrade } from './http-util.js';
import { streamUpgradeProblem } from './upgrade-check.js';
import { closeLeg, closeToForward, forward } from './relay-pipe.js';
import type { StreamLog } from './stream-log.js';
import { StreamTable, type Leg, type NewStream, type Role, type StreamEntry } from './stream-table.js';

/** What the metrics learn from the relay. */
export interface RelayEvents {
  /** Both sides connected, `setupMs` after the stream was requested. */
  paired?(setupMs: number): void;
  /** A connection refused before the upgrade (bad, used or expired token, ...). */
  refused?(code: ErrorCode): void;
  /** A stream ended, however it ended (closed, refused, expired, cancelled). */
  ended?(): void;
}

/** How long an ended stream's tokens still get 409/410 rather than 401. */
const TOMBSTONE_MS = 60_000;

/** The largest message a stream socket takes, for reasons (LIMITS.maxDataFrameBytes, 1 MiB). */
const MAX_MESSAGE_TEXT = `${LIMITS.maxDataFrameBytes / (1024 * 1024)} MiB`;

/** handshake.joinTimeoutMs's default (hub/config.ts). */
export const DEFAULT_JOIN_TIMEOUT_MS = 15_000;

/**
 * The stream relay (`wss://HUB/api/v1/streams/{id}/connect`): checks each side's stream token
 * before the upgrade, holds the first side (paused) until its peer arrives, then forwards frames
 * both ways with backpressure and carries the close from one side to the other.
 */
export class Relay {
  private readonly log: Logger;
  private readonly streamLog: StreamLog;
  private readonly table = new StreamTable();
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: LIMITS.maxDataFrameBytes,
    clientTracking: false,
    handleProtocols: () => WS_SUBPROTOCOL,
  });
  /** Upgrades being accepted, and their stream: its id goes out in the 101's STREAM_ID_HEADER. */
  private readonly joining = new WeakMap<IncomingMessage, string>();
  private stopping = false;

  private readonly events: RelayEvents;

  /** Ping interval on each leg (dead-peer detection, protocol/ws-heartbeat.ts); 0: off. */
  private readonly pingIntervalMs: number;

  /** How long an accepted stream waits for its sides to join (handshake.joinTimeoutMs). */
  private readonly joinTimeoutMs: number;

  constructor(opts: { log: Logger; streamLog: StreamLog; events?: RelayEvents; pingIntervalMs?: number; joinTimeoutMs?: number }) {
    this.log = opts.log.child({ component: 'relay' });
    this.pingIntervalMs = opts.pingIntervalMs ?? 15_000;
    this.joinTimeoutMs = opts.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS;
    this.streamLog = opts.streamLog;
    this.events = opts.events ?? {};
    this.wss.on('headers', (headers: string[], req: IncomingMessage) => {
      const streamId = this.joining.get(req);
      if (streamId) headers.push(`${STREAM_ID_HEADER}: ${streamId}`);
    });
  }

  async start(): Promise<void> {
    this.stopping = false;
  }

  /** Registers a requested stream; its tokens work from now on (the device may dial before the hub sees its 200). */
  register(s: NewStream): void {
    this.table.add(s);
  }

  /**
   * The device said 200: the stream now waits for both sides, for at most joinTimeoutMs (and never
   * past the deadline its requester chose). The requester chose that deadline for the device's
   * answer, up to handshake.maxTimeoutMs; a stream asked with POST and never joined would hold one
   * of the device's streamsPerDevice slots, and the device's stream, until then. Returns the new
   * deadline (the 201's expiresAt), or null if the stream cannot be accepted any more.
   */
  accept(streamId: string): number | null {
    const s = this.table.get(streamId);
    if (!s || s.state !== 'requested') return null;
    this.table.setState(s, 'accepted');
    const joinBy = Date.now() + this.joinTimeoutMs;
    const byJoinTimeout = joinBy < s.expiresAt;
    s.expiresAt = Math.min(s.expiresAt, joinBy);
    s.timer = setTimeout(() => this.expire(s, byJoinTimeout), Math.max(0, s.expiresAt - Date.now()));
    s.timer.unref();
    return s.expiresAt;
  }

  /** The request was refused or timed out: drop the stream (the caller records it). */
  cancel(streamId: string, code: ErrorCode, reason: string): void {
    const s = this.table.get(streamId);
    if (!s || s.state === 'ended') return;
    this.end(s, 'hub');
    for (const leg of Object.values(s.legs)) closeLeg(leg, ERRORS[code].ws, reason);
  }

  /**
   * Handles an upgrade on a relay path; returns false if the path is not a relay path.
   * `onAccepted` runs when the stream token was accepted (the connection has authenticated).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, onAccepted?: () => void): boolean {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const m = RELAY_PATH_PATTERN.exec(path);
    if (!m) return false;
    const streamId = m[1]!;
    if (this.stopping) return this.refuse(socket, streamId, 'SHUTTING_DOWN', 'the hub is shutting down');
    const problem = streamUpgradeProblem(req);
    if (problem) return this.refuse(socket, streamId, problem.code, problem.reason);
    const token = bearerToken(req.headers.authorization);
    if (!token) return this.refuse(socket, streamId, 'UNAUTHORIZED', 'missing or malformed bearer token');
    this.join(streamId, token, req, socket, head, onAccepted);
    return true;
  }

  /**
   * Joins a side to `streamId` with its stream token over this upgrade, or refuses it. The
   * open-and-connect upgrade (hub/stream-connect.ts) comes here with the token it was just given;
   * its caller has checked the WebSocket headers and the subprotocol.
   */
  join(streamId: string, token: string, req: IncomingMessage, socket: Duplex, head: Buffer, onAccepted?: () => void): void {
    const claim = this.claim(streamId, token);
    if ('code' in claim) return void this.refuse(socket, streamId, claim.code, claim.reason);
    onAccepted?.();
    this.joining.set(req, streamId);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.attach(claim.stream, claim.role, ws, true));
  }

  /**
   * Joins a channel of a multiplexed connection (hub/relay-mux.ts) to `streamId` as the `only.role`
   * side, with the same checks as a per-stream upgrade and one more: the token must be of that
   * role (and, for a device's connection, of a stream of that device). Accepts or refuses it.
   */
  attachChannel(channel: MuxChannel, streamId: string, token: string, only: { role: Role; device?: string }): void {
    const claim = this.claim(streamId, token, only);
    if ('code' in claim) {
      this.log.warn({ streamId: streamId.slice(0, 22), ...only, code: claim.code, reason: claim.reason }, 'relay attach refused');
      this.events.refused?.(claim.code);
      return channel.refuse(ERRORS[claim.code].ws, claim.reason);
    }
    channel.accept(claim.stream.id);
    this.attach(claim.stream, claim.role, channel, false);
  }

  /** Spends a stream token for `streamId`, or says why it cannot be used. */
  private claim(
    streamId: string,
    token: string,
    only?: { role: Role; device?: string },
  ): { stream: StreamEntry; role: Role } | { code: ErrorCode; reason: string } {
    if (this.stopping) return { code: 'SHUTTING_DOWN', reason: 'the hub is shutting down' };
    const hit = this.table.byToken(token);
    if (!hit || hit.stream.id !== streamId) return { code: 'UNAUTHORIZED', reason: 'token is not valid for this stream' };
    const { stream, role } = hit;
    if (only && (role !== only.role || (only.device !== undefined && stream.device !== only.device))) {
      return { code: 'UNAUTHORIZED', reason: `token is not a ${only.role} token${only.device !== undefined ? " of a stream of this connection's device" : ''}` };
    }
    if (stream.used[role]) return { code: 'TOKEN_USED', reason: `this stream's single-use ${role}-side stream token was already used` };
    if (stream.state === 'ended' || (stream.state !== 'paired' && Date.now() > stream.expiresAt)) {
      return { code: 'STREAM_EXPIRED', reason: 'the stream has ended or passed its deadline' };
    }
    stream.used[role] = true;
    return { stream, role };
  }

  /**
   * The service side of an accepted stream left before it could join (its open-and-connect
   * upgrade went away while the device answered): the stream cannot pair, so it ends now
   * (recorded `unpaired`, PEER_GONE) instead of holding the device's side until the deadline.
   */
  abandon(streamId: string, role: Role, reason: string): void {
    const s = this.table.get(streamId);
    if (!s || s.state !== 'accepted') return;
    this.end(s, role, { result: 'unpaired', code: 'PEER_GONE', reason });
    for (const leg of Object.values(s.legs)) closeLeg(leg, ERRORS.PEER_GONE.ws, reason);
  }

  private refuse(socket: Duplex, streamId: string, code: ErrorCode, reason: string): true {
    this.log.warn({ streamId, code, reason }, 'relay connection refused');
    this.events.refused?.(code);
    refuseUpgrade(socket, code, reason);
    return true;
  }

  /** `ownSocket`: the leg is a WebSocket of its own (a channel shares its connection's heartbeat). */
  private attach(s: StreamEntry, role: Role, ws: MessageSocket, ownSocket: boolean): void {
    const log = this.log.child({ stream: s.id, device: s.device, service: s.service, role });
    const leg: Leg = { role, ws, backpressured: false, closed: false };
    // A message over the relay's maxPayload: ws closes the socket with 1009 (no reason) and stops
    // reading, so its own close is seen as 1006; this says what happened instead.
    let tooLarge = false;
    ws.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') tooLarge = true;
      log.debug({ err: err.message }, 'relay socket error');
    });
    if (ownSocket) startHeartbeat(ws as WebSocket, this.pingIntervalMs);
    if (s.state === 'ended') {
      closeLeg(leg, ERRORS.STREAM_EXPIRED.ws, 'the stream has ended');
      return;
    }
    s.legs[role] = leg;
    const peer = s.legs[role === 'device' ? 'service' : 'device'];
    ws.on('close', (code: number, reason: Buffer) => {
      if (tooLarge) this.onLegClose(s, leg, ERRORS.PAYLOAD_TOO_LARGE.ws, `a message over ${MAX_MESSAGE_TEXT} from the ${role} side`);
      else this.onLegClose(s, leg, code, reason.toString());
    });
    if (!peer) {
      ws.pause(); // its bytes wait in TCP buffers until the peer arrives
      log.debug('first side connected, waiting for its peer');
      return;
    }
    this.table.setState(s, 'paired');
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    const device = role === 'device' ? leg : peer;
    const service = role === 'service' ? leg : peer;
    forward(service, device, (n) => (s.bytesToDevice += n));
    forward(device, service, (n) => (s.bytesFromDevice += n));
    peer.ws.resume();
    this.events.paired?.(Date.now() - s.openedAt);
    log.info('stream paired');
  }

  private onLegClose(s: StreamEntry, leg: Leg, code: number, reason: string): void {
    leg.closed = true;
    const peer = s.legs[leg.role === 'device' ? 'service' : 'device'];
    if (s.closedBy === null) {
      s.closedBy = leg.role;
      s.closeCode = code;
      s.closeReason = reason;
    }
    if (s.state !== 'ended' && s.state !== 'paired') {
      // A side left before its peer came: the stream cannot pair any more.
      this.end(s, leg.role, { result: 'unpaired', code: 'PEER_GONE', reason: `${leg.role} left before its peer connected` });
      return;
    }
    if (peer && !peer.closed) {
      const out = closeToForward(code, reason);
      closeLeg(peer, out.code, out.reason);
      return;
    }
    if (s.state === 'paired') this.end(s, s.closedBy);
  }

  /**
   * Deadline passed without both sides: drop the stream (close 4410) and record `unpaired`, saying
   * which side did not come.
   */
  private expire(s: StreamEntry, byJoinTimeout: boolean): void {
    if (s.state !== 'accepted') return;
    const missing = (['service', 'device'] as const).filter((r) => !s.used[r]).join(' and ');
    const who = missing ? `the ${missing} side did not join` : 'the stream was not paired';
    const reason = byJoinTimeout
      ? `${who} within ${this.joinTimeoutMs} ms of the device's answer (handshake.joinTimeoutMs)`
      : `${who} before the stream's deadline`;
    this.end(s, 'hub', { result: 'unpaired', code: 'STREAM_EXPIRED', reason });
    for (const leg of Object.values(s.legs)) closeLeg(leg, ERRORS.STREAM_EXPIRED.ws, reason);
  }

  /**
   * Marks the stream ended and records it (unless the caller, the request flow, records it).
   * A paired stream's result comes from the first close code seen.
   */
  private end(
    s: StreamEntry,
    closedBy: Role | 'hub' | null,
    outcome?: { result: StreamRecord['result']; code: ErrorCode; reason: string },
  ): void {
    if (s.state === 'ended') return;
    const wasRequested = s.state === 'requested';
    const wasPaired = s.state === 'paired';
    this.table.setState(s, 'ended');
    if (s.timer) clearTimeout(s.timer);
    s.timer = setTimeout(() => this.table.delete(s.id), TOMBSTONE_MS);
    s.timer.unref();
    this.events.ended?.();
    if (wasRequested && !outcome) return; // cancelled: the request flow records refusals and timeouts
    const closedAt = Date.now();
    let record: StreamRecord;
    const base = {
      streamId: s.id,
      device: s.device,
      service: s.service,
      requestedBy: s.requestedBy,
      closedBy: closedBy ?? 'none',
      openedAt: s.openedAt,
      closedAt,
      durationMs: closedAt - s.openedAt,
      bytesToDevice: s.bytesToDevice,
      bytesFromDevice: s.bytesFromDevice,
    } as const;
    if (outcome) {
      record = { ...base, result: outcome.result, status: ERRORS[outcome.code].http, code: outcome.code, reason: outcome.reason };
    } else if (wasPaired && s.closeCode === 1000) {
      record = { ...base, result: 'ok', status: 200, code: 'OK', reason: s.closeReason };
    } else {
      const code = errorCodeOfClose(s.closeCode ?? 1006);
      record = { ...base, result: 'error', status: ERRORS[code].http, code, reason: s.closeReason || `closed with ${s.closeCode}` };
    }
    this.streamLog.add(record);
  }

  /** Number of streams not yet ended (for tests and metrics). */
  activeCount(): number {
    return this.table.liveCount();
  }

  /** A device's streams not yet ended: being set up or open (limits.streamsPerDevice). */
  deviceStreamCount(device: string): number {
    return this.table.deviceLiveCount(device);
  }

  /** Streams still in their handshake: requested, or accepted and not yet paired (limits.pendingHandshakes). */
  handshakeCount(): number {
    return this.table.handshakeCount();
  }

  /** Legs currently paused because their peer's send buffer is full (for tests and metrics). */
  backpressuredCount(): number {
    let n = 0;
    for (const s of this.table.all()) for (const leg of Object.values(s.legs)) if (leg.backpressured) n++;
    return n;
  }

  /** Closes every stream with 1001 SHUTTING_DOWN and waits (briefly) for the sockets to close. */
  async stop(): Promise<void> {
    this.stopping = true;
    const closing: Promise<void>[] = [];
    for (const s of this.table.all()) {
      if (s.state === 'paired' && s.closedBy === null) {
        s.closedBy = 'hub';
        s.closeCode = ERRORS.SHUTTING_DOWN.ws;
        s.closeReason = 'hub shutting down';
      }
      if (s.state === 'requested') this.end(s, 'hub'); // the request flow records it
      if (s.state === 'accepted') this.end(s, 'hub', { result: 'unpaired', code: 'SHUTTING_DOWN', reason: 'hub shutting down' });
      for (const leg of Object.values(s.legs)) {
        if (leg.closed) continue;
        closing.push(waitClosed(leg.ws));
        closeLeg(leg, ERRORS.SHUTTING_DOWN.ws, 'hub shutting down');
      }
    }
    await Promise.all(closing);
    for (const s of this.table.all()) this.table.delete(s.id);
  }
}

/** Resolves when the socket closes; a peer that does not answer the close within 2 s is cut off. */
function waitClosed(ws: MessageSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === ws.CLOSED) return resolve();
    const timer = setTimeout(() => ws.terminate(), 2000);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
