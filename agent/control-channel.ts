import { EventEmitter } from 'node:events';
import { connect as mqttConnect, type IClientOptions, type MqttClient } from 'mqtt';
import {
  DEVSTREAMS_VERSION,
  PROTOCOL_VERSION,
  coalesceCorkedWrites,
  mintDeviceToken,
  topics,
  zeroMask,
  type DeviceStatusMessage,
  type Logger,
  type StreamResponse,
} from '../protocol/index.js';
import type { Agent } from 'node:http';
import type { SecureContext } from 'node:tls';
import { Backoff } from './backoff.js';
import { loginRefused, mqttsAnsweredHttp, proxyRefused, proxyUnreachable, transportFailed, upgradeRefused, type ConnectFailure } from './connect-failure.js';
import { controlWebSocket } from './control-ws.js';
import { watchForHttpAnswer } from './http-answer-watch.js';
import { keyFileDiffers } from './key-file-check.js';
import { ShortSessions } from './short-sessions.js';
import { StatusThrottle } from './status-throttle.js';

export interface ControlChannelOptions {
  /** wss://HOST[:PORT]/PATH or mqtts://HOST[:PORT] */
  url: string;
  deviceId: string;
  /** The device key. Never logged, and with auth 'token' never sent. */
  key: string;
  /** The file the key was read from, if any: a refused login compares it with the key in use. */
  keyFile?: string;
  /** 'token' (default): the MQTT password is a device token minted from the key for each connection
   *  attempt (protocol/device-token.ts); 'key': the key itself is the password. */
  auth?: 'token' | 'key';
  /** Lifetime of each minted token (default 3600 s); tokens are checked at CONNECT only. */
  tokenTtlSec?: number;
  /** The hub's TLS context (agent/hub-tls.ts: trust anchors, cipher order), the same for every reconnect; undefined from it: Node's defaults. */
  secureContext?: () => SecureContext | undefined;
  log: Logger;
  /** Called with each payload that arrives on the device's request topic. */
  onRequest: (payload: Buffer) => void;
  /** The number of streams set up or open, for the status message. */
  openStreams: () => number;
  /** Reconnect delays (exponential backoff with full jitter); default 1 s doubling up to 60 s. */
  reconnect?: { initialDelayMs: number; maxDelayMs: number };
  /** An http.Agent for MQTT over WebSocket (the CONNECT proxy), if one is used. */
  wsAgent?: Agent;
  /** That proxy's address without credentials, for the log lines that blame it. */
  proxy?: string;
  /** Least time between two status publishes caused by stream count changes. */
  statusIntervalMs?: number;
  /** MQTT keep-alive in seconds (default 30). */
  keepaliveSec?: number;
  /** More status fields (system, lastError), read at each publish; must not block. */
  statusFields?: () => Pick<DeviceStatusMessage, 'system' | 'lastError'>;
}

const STOP_TIMEOUT_MS = 3000;

/**
 * The device's MQTT control channel to the hub: authenticates as the device, keeps a last will
 * (retained offline status), subscribes to its request topic, publishes its status and its answers.
 * Events: 'connected', 'disconnected'.
 */
export class ControlChannel extends EventEmitter {
  private readonly opts: ControlChannelOptions;
  /** The device key (a secret: never logged); setKey replaces it. */
  private key: string;
  private keyFile: string | undefined;
  /** The key changed while an attempt was under way: the next one goes at once, not after a backoff. */
  private retryAtOnce = false;
  private readonly log: Logger;
  private readonly requestTopic: string;
  private readonly statusTopic: string;
  private readonly throttle: StatusThrottle;
  private client: MqttClient | undefined;
  private online = false;
  private stopping: Promise<void> | undefined;
  private lastProblem = '';
  /** The return code of a CONNACK that refused this attempt (mqtt.js then emits it as an error). */
  private refusedWith: number | undefined;
  private readonly shortSessions: ShortSessions;
  private readonly backoff: Backoff;
  private retryTimer: NodeJS.Timeout | undefined;
  /** mqtts://: the current attempt's server answered in HTTP (its first bytes): agent/http-answer-watch.ts. */
  private answeredHttp = false;

  constructor(opts: ControlChannelOptions) {
    super();
    this.opts = opts;
    this.key = opts.key;
    this.keyFile = opts.keyFile;
    this.log = opts.log.child({ component: 'control' });
    this.requestTopic = topics.streamRequest(opts.deviceId);
    this.statusTopic = topics.status(opts.deviceId);
    this.throttle = new StatusThrottle({
      minIntervalMs: opts.statusIntervalMs ?? 1000,
      publish: () => this.publishStatus(true),
    });
    this.backoff = new Backoff({
      initialMs: opts.reconnect?.initialDelayMs ?? 1000,
      maxMs: opts.reconnect?.maxDelayMs ?? 60_000,
    });
    this.shortSessions = new ShortSessions({ log: this.log, deviceId: opts.deviceId });
  }

  /** True while connected and subscribed. */
  get connected(): boolean {
    return this.online;
  }

  /** Starts connecting (and reconnecting); does not wait for the hub. */
  async start(): Promise<void> {
    if (this.client) return;
    const { deviceId } = this.opts;
    const secureContext = this.opts.secureContext?.();
    const tls = { rejectUnauthorized: true, minVersion: 'TLSv1.2' as const, ...(secureContext ? { secureContext } : {}) };
    const options: IClientOptions = {
      clientId: deviceId,
      username: deviceId,
      password: this.credential(),
      protocolVersion: 4,
      clean: true,
      keepalive: this.opts.keepaliveSec ?? 30,
      // 0: MQTT.js's own fixed-period reconnect is off; scheduleReconnect() drives it with backoff.
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      resubscribe: false,
      // No pre-built table of 65,536 two-byte Buffers (mqtt-packet's number cache): 6.3 MB of heap
      // for a client that writes a few packets a minute.
      writeCache: false,
      ...tls,
      // The zero masking key, as on the stream WebSockets (protocol/ws-duplex.ts zeroMask; the hub
      // URL is always wss:// or mqtts://): ws then sends each packet as it is, where masking it ran
      // a byte loop that V8 compiled, and sometimes with TurboFan, which alone added 5 MB of its code
      // pages to an idle agent's RSS (docs/OPERATIONS.md "Agent footprint").
      wsOptions: { ...tls, perMessageDeflate: false, followRedirects: false, generateMask: zeroMask, ...(this.opts.wsAgent ? { agent: this.opts.wsAgent } : {}) },
      // wss://: a refused upgrade (HTTP 404 for a wrong path, say) is told, not dropped.
      createWebsocket: controlWebSocket((r) => {
        if (this.stopping || client !== this.client) return;
        if (r.proxy) this.problem(proxyRefused(this.opts.proxy ?? 'the proxy', this.opts.url, r.proxy.status, r.proxy.statusText));
        else this.problem(upgradeRefused(this.opts.url, r.status, r.body, r.location));
      }),
      will: {
        topic: this.statusTopic,
        payload: Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, online: false } satisfies DeviceStatusMessage)),
        qos: 1,
        retain: true,
      },
    };
    this.log.info({ url: this.opts.url }, 'control channel connecting');
    const client = mqttConnect(this.opts.url, options);
    this.client = client;
    if (new URL(this.opts.url).protocol === 'mqtts:') watchForHttpAnswer(client, (http) => (this.answeredHttp = http));
    // wss://: one WebSocket frame (and TLS record) per MQTT packet, not one per piece mqtt-packet writes.
    client.on('connect', () => coalesceCorkedWrites(client.stream));
    client.on('connect', () => void this.onConnect(client));
    // mqtts:// (a plain TLS socket; ws already sets it for wss://): no Nagle on the small, latency-bound
    // MQTT packets, or an answer written behind an unacknowledged one waits for a delayed ACK.
    client.on('connect', () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true));
    // Emitted right before each new attempt's CONNECT is built: a fresh token for every attempt.
    client.on('reconnect', () => {
      client.options.password = this.credential();
    });
    client.on('message', (topic, payload) => {
      // Not gated on `online`: a request may arrive right behind the SUBACK; the handler decides.
      if (topic === this.requestTopic && !this.stopping) this.opts.onRequest(payload);
      else if (topic !== this.requestTopic) this.log.warn({ topic }, 'message on an unexpected topic ignored');
    });
    // A refused CONNECT, by its return code (mqtt.js's error that follows says it in MQTT's words).
    client.on('packetreceive', (packet) => {
      if (packet.cmd !== 'connack' || !packet.returnCode) return;
      this.refusedWith = packet.returnCode;
      const keyFileChanged = packet.returnCode === 4 && this.keyFile !== undefined && keyFileDiffers(this.keyFile, this.key) ? this.keyFile : undefined;
      this.problem(loginRefused(packet.returnCode, { deviceId: this.opts.deviceId, auth: this.opts.auth ?? 'token', ...(keyFileChanged ? { keyFileChanged } : {}) }));
    });
    client.on('close', () => {
      if (this.online) {
        this.online = false;
        this.throttle.cancel();
        this.log.info('control channel disconnected');
        this.shortSessions.ended(!!this.stopping);
        this.emit('disconnected');
      }
      this.scheduleReconnect(client);
    });
    client.on('error', (err: Error & { code?: string | number }) => {
      if (this.online) this.shortSessions.localError();
      if (err.code === undefined && this.answeredHttp) {
        this.problem(mqttsAnsweredHttp(this.opts.url)); // MQTT.js's parse error of an HTTP status line
        return;
      }
      if (err.code !== undefined && err.code === this.refusedWith) {
        this.refusedWith = undefined;
        this.log.debug({ err: err.message, code: err.code }, 'control channel error'); // told by the CONNACK's own line
        return;
      }
      // Through a proxy, the agent's own TCP connections go to the proxy only: one that fails is the proxy's.
      const syscall = (err as { syscall?: string }).syscall;
      if (this.opts.wsAgent && (syscall === 'connect' || syscall === 'getaddrinfo')) this.problem(proxyUnreachable(this.opts.proxy ?? 'the proxy', err));
      else this.problem(transportFailed(err));
    });
  }

  /** One warn line per distinct problem: the client retries every few seconds, forever. */
  private problem(p: ConnectFailure): void {
    if (p.key !== this.lastProblem) this.log.warn(p.fields, 'control channel error');
    else this.log.debug(p.fields, 'control channel error');
    this.lastProblem = p.key;
  }

  /** After a failed attempt or a lost connection: the next attempt after a backoff delay, forever. */
  private scheduleReconnect(client: MqttClient): void {
    if (this.stopping || client !== this.client || this.retryTimer) return;
    const delayMs = this.retryAtOnce ? 0 : this.backoff.next();
    this.retryAtOnce = false;
    this.log.info({ attempt: this.backoff.attempt, delayMs, ceilingMs: this.backoff.ceiling(this.backoff.attempt - 1) }, 'control channel reconnecting');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopping || client !== this.client) return;
      client.reconnect();
    }, delayMs);
  }

  /** The MQTT password for the next CONNECT: a fresh device token, or the key (auth: key). */
  private credential(): string {
    const { auth = 'token', deviceId, tokenTtlSec = 3600 } = this.opts;
    if (auth === 'key') return this.key;
    return mintDeviceToken(deviceId, this.key, Math.floor(Date.now() / 1000) + tokenTtlSec);
  }

  /**
   * The key for the next CONNECT (a reload after `hub rotate-key`): the connection that is up stays
   * as it is, proved with the key it was made with; when the hub drops it (the old key revoked), the
   * reconnect proves the new one. Not connected (refused with the old key, say): a changed key is
   * tried at once, not after the rest of the backoff. `keyFile`: where the key now comes from.
   */
  setKey(key: string, keyFile?: string): void {
    const changed = key !== this.key;
    this.key = key;
    this.keyFile = keyFile;
    if (changed && !this.online) this.retryNow('the device key changed');
  }

  /**
   * Not connected: the next attempt now, not after the rest of the backoff (up to maxDelayMs, 60 s),
   * e.g. a reload with the key the hub now wants. An attempt under way finishes first; if it fails,
   * the one after it goes at once.
   */
  private retryNow(why: string): void {
    const client = this.client;
    if (this.stopping || !client || this.online) return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.log.info({ why }, 'control channel reconnecting now');
      client.reconnect();
    } else {
      this.retryAtOnce = true;
    }
  }

  /** Reconnect state, for status reports: connected, or the attempt count since the last connection. */
  get reconnectAttempt(): number {
    return this.backoff.attempt;
  }

  private async onConnect(client: MqttClient): Promise<void> {
    this.lastProblem = '';
    this.retryAtOnce = false; // the attempt under way worked: the next loss waits its backoff as usual
    try {
      const granted = await client.subscribeAsync(this.requestTopic, { qos: 1 });
      if (granted.some((g) => g.qos !== 1 && g.qos !== 0)) {
        this.log.error({ topic: this.requestTopic }, 'hub refused the request subscription');
        return;
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'subscribe failed');
      return;
    }
    if (this.stopping || client !== this.client) return;
    this.online = true;
    this.shortSessions.connected();
    this.backoff.reset(); // only a connection that got as far as its subscription counts as working
    this.publishStatus(true);
    this.throttle.published();
    this.emit('connected');
  }

  /** Tells the channel that the number of open streams changed; the status follows (throttled). */
  streamsChanged(): void {
    if (this.online && !this.stopping) this.throttle.poke();
  }

  /** Publishes a stream answer (QoS 1) on the topic the request named. */
  respond(topic: string, response: StreamResponse): void {
    const client = this.client;
    if (!client) return;
    client.publish(topic, JSON.stringify(response), { qos: 1 }, (err) => {
      if (err) this.log.warn({ stream: response.streamId.slice(0, 8), err: err.message }, 'answer not delivered');
    });
  }

  private publishStatus(online: boolean): Promise<void> {
    const client = this.client;
    if (!client) return Promise.resolve();
    const status: DeviceStatusMessage = online
      ? {
          v: PROTOCOL_VERSION, online: true, at: Date.now(), agentVersion: DEVSTREAMS_VERSION, openStreams: this.opts.openStreams(),
          ...this.opts.statusFields?.(),
        }
      : { v: PROTOCOL_VERSION, online: false, at: Date.now() };
    this.log.debug({ online, openStreams: status.openStreams }, 'status');
    return new Promise((resolve) => {
      client.publish(this.statusTopic, JSON.stringify(status), { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ err: err.message }, 'status not delivered');
        resolve();
      });
    });
  }

  /** Publishes the retained offline status (if connected), then disconnects cleanly. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.throttle.cancel();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const wasOnline = this.online;
    this.online = false;
    const bounded = <T>(p: Promise<T>): Promise<unknown> =>
      Promise.race([p, new Promise((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS).unref())]);
    if (wasOnline && client.connected) await bounded(this.publishStatus(false));
    await bounded(new Promise<void>((resolve) => client.end(!client.connected, {}, () => resolve())));
    this.client = undefined;
    if (wasOnline) this.emit('disconnected');
    this.log.info('control channel closed');
  }
}
