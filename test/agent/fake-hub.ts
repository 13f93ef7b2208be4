import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Aedes, type AuthenticateError } from 'aedes';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import {
  RELAY_PATH_PATTERN,
  WS_SUBPROTOCOL,
  WsDuplex,
  apiPaths,
  bearerToken,
  deviceSigningKey,
  verifyDeviceToken,
  newSecret,
  newStreamId,
  topics,
  type StreamRequest,
} from '../../protocol/index.js';
import { tcpUnder } from '../helpers/tls.js';

/**
 * A stand-in for the hub in agent tests: one TLS port (127.0.0.1:0) with an embedded Aedes broker
 * over WebSocket at /mqtt (device auth and the per-device topic ACL) and a minimal relay endpoint
 * that accepts the device side of a stream (bearer token, subprotocol) and hands it to the test,
 * which plays the service side.
 */
export class FakeHub {
  readonly devices = new Map<string, string>();
  /** Every message published to the broker, in order. */
  readonly published: { topic: string; payload: string; retain: boolean }[] = [];
  /** Relay upgrades refused, with the HTTP status sent. */
  readonly relayRefusals: number[] = [];
  /** TLS connections accepted on the hub's port (MQTT and relay alike), and how many have closed. */
  tlsConnections = 0;
  tlsClosed = 0;
  /** Relay upgrade requests received; `resetRelayUpgrade(n)` true resets the TCP connection under the n-th (1-based). */
  relayUpgrades = 0;
  resetRelayUpgrade: (n: number) => boolean = () => false;
  /** The size of every WebSocket message the devices sent on their MQTT connections, in order. */
  readonly mqttMessageSizes: number[] = [];
  port = 0;
  private broker!: Aedes;
  private server!: Server;
  private readonly relayTokens = new Map<string, string>();
  private readonly relayWaiters = new Map<string, (d: WsDuplex) => void>();
  private readonly relayArrived = new Map<string, WsDuplex>();
  private readonly sockets = new Set<WebSocket>();
  private readonly publishListeners = new Set<() => void>();

  constructor(private readonly tls: { cert: string; key: string }) {}

  async start(): Promise<void> {
    this.broker = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        const key = username !== undefined ? this.devices.get(username) : undefined;
        const pw = password?.toString() ?? '';
        // The agent sends a device token minted from its key (or, with auth: key, the key itself).
        const proved = key !== undefined && (pw === key || verifyDeviceToken(pw, username!, [deviceSigningKey(key)], { nowMs: Date.now(), maxTtlSec: 86_400 }).ok);
        if (proved && client.id === username) return done(null, true);
        const err = new Error('not authorized') as AuthenticateError;
        err.returnCode = 5;
        done(err, null);
      },
      authorizePublish: (client, packet, cb) =>
        cb(client && !packet.topic.startsWith(`devstreams/v1/devices/${client.id}/`) ? new Error('denied') : null),
      authorizeSubscribe: (client, sub, cb) =>
        cb(null, sub.topic === topics.streamRequest(client.id) ? sub : null),
    });
    this.broker.on('publish', (packet) => {
      if (packet.topic.startsWith('$SYS')) return;
      this.published.push({ topic: packet.topic, payload: packet.payload.toString(), retain: packet.retain });
      for (const l of this.publishListeners) l();
    });

    const mqttWss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    const relayWss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
    this.server = createServer({ cert: this.tls.cert, key: this.tls.key }, (_req, res) => res.writeHead(404).end());
    this.server.on('secureConnection', (socket) => {
      this.tlsConnections++;
      socket.once('close', () => this.tlsClosed++);
    });
    this.server.on('upgrade', (req, socket, head) => {
      const path = new URL(req.url ?? '/', 'https://x').pathname;
      if (path === apiPaths.mqtt) {
        mqttWss.handleUpgrade(req, socket, head, (ws) => {
          this.sockets.add(ws);
          ws.on('message', (d: Buffer) => this.mqttMessageSizes.push(d.length));
          this.broker.handle(createWebSocketStream(ws) as never, req);
        });
        return;
      }
      if (this.resetRelayUpgrade(++this.relayUpgrades)) {
        tcpUnder(socket).resetAndDestroy();
        return;
      }
      const m = RELAY_PATH_PATTERN.exec(path);
      const token = bearerToken(req.headers.authorization);
      const streamId = m?.[1];
      if (!streamId || !token || this.relayTokens.get(streamId) !== token) {
        this.relayRefusals.push(401);
        const body = JSON.stringify({ error: { code: 'UNAUTHORIZED', status: 401, reason: 'bad token' } });
        socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        return;
      }
      this.relayTokens.delete(streamId); // single use
      relayWss.handleUpgrade(req, socket, head, (ws) => {
        this.sockets.add(ws);
        const duplex = new WsDuplex(ws);
        duplex.on('error', () => {}); // tests that care listen too; none may crash the run
        const waiter = this.relayWaiters.get(streamId);
        if (waiter) waiter(duplex);
        else this.relayArrived.set(streamId, duplex);
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `wss://127.0.0.1:${this.port}/mqtt`;
  }

  addDevice(id: string): string {
    const key = newSecret();
    this.devices.set(id, key);
    return key;
  }

  /** A stream request for `deviceId` with a fresh stream id and relay token; `over` replaces fields. */
  request(deviceId: string, service: string, over: Partial<StreamRequest> = {}): StreamRequest {
    const streamId = over.streamId ?? newStreamId();
    const token = over.token ?? newSecret();
    this.relayTokens.set(streamId, token);
    return {
      v: 1,
      streamId,
      service,
      relayUrl: `wss://127.0.0.1:${this.port}${apiPaths.relay(streamId)}`,
      token,
      expiresAt: Date.now() + 60_000,
      replyTo: topics.streamResponse(deviceId, 'node1'),
      ...over,
    };
  }

  /** Publishes a request (or any payload) on the device's request topic, QoS 1. */
  async send(deviceId: string, payload: StreamRequest | string): Promise<void> {
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    await new Promise<void>((resolve, reject) =>
      this.broker.publish(
        { cmd: 'publish', topic: topics.streamRequest(deviceId), payload: Buffer.from(body), qos: 1, retain: false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }

  /** Waits for the first published message (from now or earlier) that matches. */
  waitFor(pred: (m: { topic: string; payload: string; retain: boolean }) => boolean, from = 0): Promise<{ topic: string; payload: string }> {
    return new Promise((resolve) => {
      const check = (): boolean => {
        const hit = this.published.slice(from).find(pred);
        if (hit) {
          this.publishListeners.delete(listener);
          resolve(hit);
        }
        return !!hit;
      };
      const listener = (): void => void check();
      this.publishListeners.add(listener);
      check();
    });
  }

  /** Waits for the device's answer to one stream. */
  async response(streamId: string): Promise<{ status: number; code: string; reason: string; topic: string }> {
    const m = await this.waitFor((p) => p.topic.includes('/streams/response') && p.payload.includes(streamId));
    return { ...(JSON.parse(m.payload) as { status: number; code: string; reason: string }), topic: m.topic };
  }

  /** The device side of a stream, once the agent has dialled the relay. */
  deviceSide(streamId: string): Promise<WsDuplex> {
    const arrived = this.relayArrived.get(streamId);
    if (arrived) return Promise.resolve(arrived);
    return new Promise((resolve) => this.relayWaiters.set(streamId, resolve));
  }

  /** Closes every device's MQTT connection (the devices reconnect). */
  dropMqttClients(): void {
    const { clients } = this.broker as unknown as { clients: Record<string, { close(): void }> };
    for (const client of Object.values(clients)) client.close();
  }

  async stop(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
