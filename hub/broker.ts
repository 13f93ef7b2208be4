import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from 'aedes';
import {
  LIMITS,
  isDeviceId,
  looksLikeDeviceToken,
  parseTopic,
  staticKeySlot,
  topics,
  verifyDeviceToken,
  type Logger,
} from '../protocol/index.js';
import type { HubConfig } from './config.js';
import { KEY_SLOTS, revokedWhy, signingKeysOf, type DeviceRegistry, type ProvenKey } from './registry.js';
import { TakeoverWatch } from './takeover-watch.js';

/**
 * The embedded MQTT broker (Aedes). Devices authenticate with username = device id, password = a
 * device token (protocol/device-token.ts) or, unless the config forbids it, the device key itself;
 * both are checked against the signing keys of the device's key slots; client id = device id.
 * A disabled device is refused; when the registry changes, a connected device that was disabled,
 * removed, or whose proven key slot changed is disconnected at once. Each device may publish
 * only its own `status` and `streams/response[/node]`, and subscribe only to its own
 * `streams/request`, without wildcards (ARCHITECTURE: MQTT control channel). A new connection for a
 * device that is connected takes over (the old one is closed): logged with both peers, and said
 * plainly when it keeps happening (hub/takeover-watch.ts).
 */

// MQTT 3.1.1 CONNACK return codes (aedes' AuthErrorCode is a const enum, unusable with isolatedModules).
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

/** What a client proved at CONNECT: its device and the key (slot and signing key) it used. */
type Session = ProvenKey;

/** `why`: 'connection closed', or 'taken over by a new connection' for the same device. */
export type DeviceConnectionListener = (deviceId: string, why: string) => void;

export class Broker {
  private readonly registry: DeviceRegistry;
  private readonly deviceAuth: HubConfig['deviceAuth'];
  private readonly log: Logger;
  private instance: Aedes | null = null;
  private stopped: Promise<void> | null = null;
  /** The device id each authenticated client proved. */
  private readonly deviceOf = new WeakMap<Client, string>();
  /** Every authenticated client still connected, with the key it proved. */
  private readonly sessions = new Map<Client, Session>();
  /** The live client of each device (a new connection with the same id replaces the old one). */
  private readonly current = new Map<string, Client>();
  /** The peer (address:port) of each connection handed to the broker, by its stream (Client.conn). */
  private readonly peers = new WeakMap<object, string>();
  /** A live client that a newer connection for its device is taking over, and that connection. */
  private readonly takenOverBy = new WeakMap<Client, Client>();
  private readonly takeovers: TakeoverWatch;
  private readonly disconnectListeners: DeviceConnectionListener[] = [];
  private readonly authFailureListeners: (() => void)[] = [];

  constructor(opts: { registry: DeviceRegistry; deviceAuth?: HubConfig['deviceAuth']; log: Logger }) {
    this.registry = opts.registry;
    this.deviceAuth = opts.deviceAuth ?? { allowStaticKeys: true, maxTokenTtlSeconds: 86_400 };
    this.log = opts.log.child({ component: 'broker' });
    this.takeovers = new TakeoverWatch({ log: this.log });
    this.registry.onChange(() => this.recheckSessions());
  }

  async start(): Promise<void> {
    if (this.instance) return;
    const aedes = await Aedes.createBroker({
      maxClientsIdLength: LIMITS.maxDeviceIdLength,
      connectTimeout: 10_000,
      drainTimeout: 30_000,
      maxTopicLevels: 8,
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => this.authorizeSubscribe(client, sub, done),
    });
    aedes.on('clientReady', (client) => {
      const device = this.deviceOf.get(client);
      if (!device) return;
      this.current.set(device, client);
      this.log.info({ device, address: this.peerOf(client) }, 'device connected');
    });
    aedes.on('clientDisconnect', (client) => {
      this.sessions.delete(client);
      const device = this.deviceOf.get(client);
      if (!device || this.current.get(device) !== client) return;
      this.current.delete(device);
      const by = this.takenOverBy.get(client);
      const why = by && !by.closed ? 'taken over by a new connection' : 'connection closed';
      this.log.info({ device, address: this.peerOf(client), why }, 'device disconnected');
      if (by && !by.closed) this.takeovers.takenOver(device, this.peerOf(client), this.peerOf(by));
      for (const l of this.disconnectListeners) l(device, why);
    });
    aedes.on('clientError', (client, err) => {
      this.log.debug({ device: this.deviceOf.get(client), err: err.message }, 'mqtt client error');
    });
    aedes.on('connectionError', (_client, err) => {
      this.log.debug({ err: err.message }, 'mqtt connection error');
    });
    this.instance = aedes;
  }

  /** False when the embedded broker is not started (the hub uses an external broker). */
  get running(): boolean {
    return this.instance !== null && !this.instance.closed;
  }

  /** The running Aedes instance (for the control bus). */
  get aedes(): Aedes {
    if (!this.instance) throw new Error('broker is not started');
    return this.instance;
  }

  /** Serves one MQTT connection (a TLS socket or a WebSocket stream); `peer`: its address:port, for the log. */
  handle(stream: Duplex, req?: IncomingMessage, peer?: string): void {
    if (!this.instance || this.instance.closed) {
      stream.destroy();
      return;
    }
    if (peer) this.peers.set(stream, peer);
    this.instance.handle(stream, req);
  }

  private peerOf(client: Client): string {
    return this.peers.get(client.conn) ?? 'unknown';
  }

  /** Called when a device's live MQTT connection ends (belt and braces next to its last will). */
  onDeviceDisconnected(listener: DeviceConnectionListener): void {
    this.disconnectListeners.push(listener);
  }

  /** Calls `listener` for every CONNECT refused for its credentials (the metrics count them). */
  onAuthFailure(listener: () => void): void {
    this.authFailureListeners.push(listener);
  }

  isConnected(deviceId: string): boolean {
    return this.current.has(deviceId);
  }

  async stop(): Promise<void> {
    const aedes = this.instance;
    if (!aedes) return;
    this.stopped ??= new Promise<void>((resolve) => aedes.close(() => resolve()));
    await this.stopped;
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const refuse = (returnCode: number, why: string, device?: string): void => {
      this.log.warn({ device, address: this.peerOf(client), why }, 'mqtt connection refused');
      for (const l of this.authFailureListeners) l();
      done(Object.assign(new Error(why), { returnCode }) as AuthenticateError, null);
    };
    if (!username || !password) return refuse(BAD_USERNAME_OR_PASSWORD, 'no username or password');
    if (!isDeviceId(username)) return refuse(BAD_USERNAME_OR_PASSWORD, 'username is not a device id');
    let entry;
    try {
      entry = this.registry.get(username);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'device registry unavailable');
      return refuse(BAD_USERNAME_OR_PASSWORD, 'registry unavailable', username);
    }
    if (!entry) return refuse(BAD_USERNAME_OR_PASSWORD, 'unknown device', username);
    const keys = signingKeysOf(entry);
    let slot: number;
    const text = password.length <= 512 ? password.toString('utf8') : '';
    if (looksLikeDeviceToken(text)) {
      const check = verifyDeviceToken(text, username, keys, {
        nowMs: Date.now(),
        maxTtlSec: this.deviceAuth.maxTokenTtlSeconds,
      });
      if (!check.ok) return refuse(BAD_USERNAME_OR_PASSWORD, `device token refused: ${check.why}`, username);
      slot = check.slot;
    } else {
      if (!this.deviceAuth.allowStaticKeys) {
        return refuse(BAD_USERNAME_OR_PASSWORD, 'static device keys are not accepted (deviceAuth.allowStaticKeys: false)', username);
      }
      slot = staticKeySlot(password, keys);
      if (slot < 0) return refuse(BAD_USERNAME_OR_PASSWORD, 'wrong device key', username);
    }
    // Checked after the credential, so a disabled device's state is only told to its key holder's logs.
    if (entry.disabled) return refuse(NOT_AUTHORIZED, 'device is disabled', username);
    if (client.id !== username) return refuse(IDENTIFIER_REJECTED, 'client id must equal the device id', username);
    this.deviceOf.set(client, username);
    this.sessions.set(client, { device: username, slot: KEY_SLOTS[slot]!, sasKey: keys[slot]! });
    // Aedes closes the device's live connection when this one registers (MQTT-3.1.4-2).
    const live = this.current.get(username);
    if (live && live !== client) this.takenOverBy.set(live, client);
    done(null, true);
  }

  /** After a registry change: disconnect every device that was disabled, removed, or whose proven key changed. */
  private recheckSessions(): void {
    for (const [client, s] of this.sessions) {
      const why = revokedWhy(this.registry, s);
      if (!why) continue;
      this.sessions.delete(client);
      this.log.warn({ device: s.device, why }, 'device disconnected by the hub');
      client.close();
    }
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    const device = client ? this.deviceOf.get(client) : undefined;
    const parsed = parseTopic(packet.topic);
    const size = packet.payload ? Buffer.byteLength(packet.payload) : 0;
    let why: string | null = null;
    if (!parsed) why = 'not a devstreams topic';
    else if (client === null) why = parsed.kind === 'status' ? null : 'not a status topic'; // an orphaned will
    else if (!device) why = 'client not authenticated';
    else if (parsed.deviceId !== device) why = "another device's topic";
    else if (parsed.kind === 'streamRequest') why = 'devices may not publish requests';
    else if (parsed.kind === 'streamResponse' && packet.retain) why = 'responses may not be retained';
    else if (size > LIMITS.maxControlPayloadBytes) why = `payload over ${LIMITS.maxControlPayloadBytes} bytes`;
    if (why) {
      this.log.warn({ device, topic: packet.topic.slice(0, 256), why }, 'mqtt publish refused');
      return done(new Error(`publish refused: ${why}`));
    }
    done(null);
  }

  private authorizeSubscribe(
    client: Client,
    sub: Subscription,
    done: (error: Error | null, subscription?: Subscription | null) => void,
  ): void {
    const device = this.deviceOf.get(client);
    if (device && sub.topic === topics.streamRequest(device)) return done(null, sub);
    this.log.warn({ device, topic: sub.topic.slice(0, 256) }, 'mqtt subscribe refused');
    done(null, null); // SUBACK 0x80: the client learns it was refused, the connection stays
  }
}
