import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ERRORS,
  MUX_DEVICE_PATH,
  MUX_SERVICE_PATH,
  MUX_MAX_MESSAGE_BYTES,
  MUX_SUBPROTOCOL,
  MUX_SUBPROTOCOLS,
  MUX_SUBPROTOCOL_WINDOWS,
  MuxConnection,
  bearerToken,
  parseDeviceToken,
  startHeartbeat,
  verifyDeviceToken,
  type ErrorCode,
  type Logger,
  type MuxChannel,
} from '../protocol/index.js';
import { refuseUpgrade } from './http-util.js';
import { openOnChannel } from './mux-open.js';
import { KEY_SLOTS, revokedWhy, signingKeysOf, type DeviceRegistry, type ProvenKey } from './registry.js';
import type { Relay } from './relay.js';
import type { ServiceTokens } from './service-tokens.js';
import type { StreamRequests } from './stream-requests.js';
import { streamUpgradeProblem } from './upgrade-check.js';

/** Who a connection authenticated as: a device and the key it proved, or a service token. */
type Proof = ({ kind: 'device' } & ProvenKey) | { kind: 'service'; token: string; name: string };

/** Streams one device connection may carry at once (its device's stream limits apply first). */
const MAX_CHANNELS_PER_CONNECTION = 4096;

export interface RelayMuxOptions {
  relay: Relay;
  registry: DeviceRegistry;
  tokens: ServiceTokens;
  streams: StreamRequests;
  /** How far ahead a device token's expiry may reach (deviceAuth.maxTokenTtlSeconds). */
  maxTokenTtlSec: number;
  /** Ping interval on each connection (dead-peer detection); 0: off. */
  pingIntervalMs: number;
  log: Logger;
  /** A connection refused before the upgrade; `service`: its service token was missing or unknown. */
  events?: { refused?(code: ErrorCode, side: 'device' | 'service'): void };
}

/**
 * Multiplexed stream legs (docs/MULTIPLEXING.md), subprotocol `devstreams.v1.mux2` or `devstreams.v1.mux`, beside the
 * per-stream upgrades, which keep working:
 * - `wss://HUB/api/v1/relay/device`: an agent authenticates the connection with a device token,
 *   as it does its MQTT connection, then attaches each accepted stream as a channel with the
 *   stream's device token; the relay checks that token as it checks a per-stream upgrade, and that
 *   it belongs to a stream of this device.
 * - `wss://HUB/api/v1/relay/service`: the SDK authenticates with its service token, then opens
 *   each stream with an OPEN (hub/mux-open.ts), checked against the token as each is asked.
 */
export class RelayMux {
  private readonly o: RelayMuxOptions;
  private readonly log: Logger;
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MUX_MAX_MESSAGE_BYTES,
    clientTracking: false,
    // The newest framing the client offers (protocol/mux-frames.ts): window updates when it can.
    handleProtocols: (offered) => (offered.has(MUX_SUBPROTOCOL_WINDOWS) ? MUX_SUBPROTOCOL_WINDOWS : MUX_SUBPROTOCOL),
  });
  /** Each open connection and the device key it proved (checked again when the registry changes). */
  private readonly connections = new Map<MuxConnection, Proof>();
  private stopping = false;

  constructor(opts: RelayMuxOptions) {
    this.o = opts;
    this.log = opts.log.child({ component: 'relay-mux' });
    this.o.registry.onChange(() => this.recheck());
  }

  async start(): Promise<void> {
    this.stopping = false;
  }

  /**
   * Handles an upgrade on the multiplexed endpoint; false when the path is another's. `onAccepted`
   * runs once the device token was accepted (the connection has authenticated).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, onAccepted?: () => void): boolean {
    const path = (req.url ?? '').split('?')[0];
    if (path !== MUX_DEVICE_PATH && path !== MUX_SERVICE_PATH) return false;
    const side = path === MUX_DEVICE_PATH ? 'device' : 'service';
    if (this.stopping) return this.refuse(socket, side, 'SHUTTING_DOWN', 'the hub is shutting down');
    const problem = streamUpgradeProblem(req, MUX_SUBPROTOCOLS);
    if (problem) return this.refuse(socket, side, problem.code, problem.reason);
    const token = bearerToken(req.headers.authorization);
    if (!token) return this.refuse(socket, side, 'UNAUTHORIZED', 'missing or malformed bearer token');
    const proof = side === 'device' ? this.proveDevice(token) : this.proveService(token);
    if ('why' in proof) return this.refuse(socket, side, 'UNAUTHORIZED', proof.why, proof.device);
    onAccepted?.();
    // The cipher the client asked for first, as the hub honours it (hub/server.ts CIPHERS): for the log.
    const cipher = (socket as Partial<TLSSocket>).getCipher?.()?.standardName;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.open(ws, proof, cipher));
    return true;
  }

  /** Closes every connection (after the relay has closed their streams). */
  async stop(): Promise<void> {
    this.stopping = true;
    const closing = [...this.connections.keys()].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once('close', () => resolve());
          // Streams still being opened or attached are refused as the REST call would refuse them.
          c.refusePending(ERRORS.SHUTTING_DOWN.ws, 'the hub is shutting down');
          c.close(1001, 'hub shutting down');
          setTimeout(resolve, 2000).unref();
        }),
    );
    await Promise.all(closing);
    this.connections.clear();
  }

  /** Connections open now (for tests). */
  connectionCount(): number {
    return this.connections.size;
  }

  /** Connections open now, by side (the metrics' devstreams_hub_mux_connections). */
  connectionsBySide(): { device: number; service: number } {
    const n = { device: 0, service: 0 };
    for (const proof of this.connections.values()) n[proof.kind]++;
    return n;
  }

  private open(ws: WebSocket, proof: Proof, cipher: string | undefined): void {
    const log = this.log.child(proof.kind === 'device' ? { device: proof.device } : { caller: proof.name });
    const conn = new MuxConnection({
      ws,
      role: 'server',
      maxChannels: MAX_CHANNELS_PER_CONNECTION,
      ...(proof.kind === 'device'
        ? { onAttach: (channel, request) => this.o.relay.attachChannel(channel, request.streamId, request.token, { role: 'device', device: proof.device }) }
        : { onOpen: (channel, body) => this.openStream(channel, body, proof.token) }),
    });
    this.connections.set(conn, proof);
    startHeartbeat(ws, this.o.pingIntervalMs);
    log.info({ cipher }, 'multiplexed connection open');
    conn.once('close', (code: number) => {
      this.connections.delete(conn);
      log.info({ code }, 'multiplexed connection closed');
    });
  }

  /** An OPEN: the service token is checked again (it may have been revoked since the upgrade). */
  private openStream(channel: MuxChannel, body: unknown, token: string): void {
    const caller = this.o.tokens.authenticate(token);
    if (!caller) {
      this.o.events?.refused?.('UNAUTHORIZED', 'service');
      return channel.refuse(ERRORS.UNAUTHORIZED.ws, 'the service token is no longer valid');
    }
    void openOnChannel({ streams: this.o.streams, relay: this.o.relay, log: this.log }, channel, body, caller);
  }

  /** After a registry change: close the connections of devices disabled, removed, or whose proven key changed. */
  private recheck(): void {
    for (const [conn, proof] of this.connections) {
      if (proof.kind !== 'device') continue;
      const why = revokedWhy(this.o.registry, proof);
      if (!why) continue;
      this.log.warn({ device: proof.device, why }, 'multiplexed connection closed by the hub');
      conn.close(ERRORS.UNAUTHORIZED.ws, why);
    }
  }

  private proveService(token: string): Proof | { why: string; device?: string } {
    const caller = this.o.tokens.authenticate(token);
    return caller ? { kind: 'service', token, name: caller.name } : { why: 'a valid service token is required' };
  }

  /** The device and key a connection's token proves, or why it proves none. */
  private proveDevice(token: string): Proof | { why: string; device?: string } {
    const parsed = parseDeviceToken(token);
    if (!parsed) return { why: 'device token refused: malformed' };
    const device = parsed.deviceId;
    let entry;
    try {
      entry = this.o.registry.get(device);
    } catch {
      return { why: 'device token refused: registry unavailable', device };
    }
    if (!entry) return { why: 'device token refused: unknown device', device };
    const keys = signingKeysOf(entry);
    const check = verifyDeviceToken(token, device, keys, { nowMs: Date.now(), maxTtlSec: this.o.maxTokenTtlSec });
    if (!check.ok) return { why: `device token refused: ${check.why}`, device };
    if (entry.disabled) return { why: 'device token refused: device is disabled', device };
    return { kind: 'device', device, slot: KEY_SLOTS[check.slot]!, sasKey: keys[check.slot]! };
  }

  private refuse(socket: Duplex, side: 'device' | 'service', code: ErrorCode, reason: string, device?: string): true {
    this.log.warn({ side, ...(device ? { device } : {}), code, reason }, 'multiplexed connection refused');
    this.o.events?.refused?.(code, side);
    refuseUpgrade(socket, code, reason);
    return true;
  }
}
