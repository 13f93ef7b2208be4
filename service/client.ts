import https from 'node:https';
import type { SecureContext } from 'node:tls';
import {
  DeviceInfoSchema,
  DeviceListSchema,
  HubEndpointsSchema,
  LIMITS,
  OpenStreamResultSchema,
  RELAY_MIN_TLS_VERSION,
  StreamListSchema,
  TlsSessionCache,
  apiPaths,
  clientCiphers,
  lazyTlsContext,
  resolveTlsCipher,
  silentLogger,
  type DeviceInfo,
  type HubEndpoints,
  type Logger,
  type StreamQuery,
  type OpenStreamBody,
  type StreamRecord,
  type TlsCipherChoice,
  WsDuplex,
} from '../protocol/index.js';
import { HubRefusalError } from './errors.js';
import { hubUrl, requestJson, type HubEndpoint } from './http.js';
import { ServiceMux } from './mux-client.js';
import { dialRelay } from './relay.js';

export interface DevstreamsClientOptions {
  /** The hub's base URL, https:// only (e.g. https://hub.example.com:8443). */
  hub: string;
  /** Service token, sent as `Authorization: Bearer`. Never logged. */
  token: string;
  /** PEM trust anchors for the hub; when given they replace the system CAs (as Node's `ca` does). */
  ca?: string | Buffer;
  /**
   * What a TLS trust failure's message calls the place the hub's CA is set: "the client's `ca`
   * option" by default. A program with a setting of its own for it names that (the CLI:
   * "--ca / DEVSTREAMS_CA").
   */
  caSource?: string;
  logger?: Logger;
  /** Deadline of a fleet query (devices, streams). Default 30 s. */
  requestTimeoutMs?: number;
  /** Ping interval on each stream WebSocket: a relay silent for a whole interval is dropped. Default 15 s; 0 turns it off. */
  pingIntervalMs?: number;
  /**
   * Carry this client's streams on one connection to the hub (docs/MULTIPLEXING.md): default true.
   * Worth it from the second stream on; a process that opens one stream (`devstreams connect`)
   * saves a round trip with false. A hub that does not offer it gets a WebSocket per stream.
   */
  multiplex?: boolean;
  /**
   * The cipher the stream connections ask the hub for first: `auto` (default) measures AES-GCM and
   * ChaCha20-Poly1305 on this CPU at the first stream and asks for ChaCha20-Poly1305 where it is
   * clearly faster (a CPU without AES instructions); `aes-gcm` or `chacha20-poly1305` decide it.
   */
  tlsCipher?: TlsCipherChoice;
}

export interface OpenStreamOptions {
  /**
   * Handshake deadline asked of the hub, in ms: 1000 to 600000 (LIMITS), else the hub refuses the
   * request with 400 BAD_REQUEST. Within that range the hub lowers it to its own maximum
   * (`handshake.maxTimeoutMs` in hub.yaml, 300000 by default). Absent: the hub's default
   * (`handshake.defaultTimeoutMs`, 60000).
   */
  timeoutMs?: number;
  /** Gives up opening (rejects with the signal's reason); a stream already returned is unaffected. */
  signal?: AbortSignal;
}

/** Slack on top of the handshake deadline: the hub answers 504 at the deadline itself. */
const ANSWER_SLACK_MS = 10_000;
const RELAY_UPGRADE_TIMEOUT_MS = 30_000;

/**
 * The service-side SDK: opens streams to devices by id and queries the hub.
 *
 * ```ts
 * const client = new DevstreamsClient({ hub, token, ca });
 * const stream = await client.openStream('pi-kitchen', 'ssh'); // a Duplex with TCP semantics
 * ```
 *
 * Errors are DevstreamsError: HubRefusalError when the hub, relay or device said no (compare
 * `code`), HubRequestError (code INTERNAL, status 0) when the hub could not be reached or answered
 * garbage. The constructor does no I/O.
 */
export class DevstreamsClient {
  private readonly endpoint: HubEndpoint;
  private readonly ca: string | Buffer | undefined;
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private readonly tlsCipher: TlsCipherChoice;
  /**
   * The relay dials' TLS context: the configured trust anchors (else the system's) and the cipher
   * order, built at the first stream (so a fleet query never measures the ciphers), not per stream.
   */
  private readonly relayContext = lazyTlsContext(() => ({ ca: this.ca, ciphers: clientCiphers(resolveTlsCipher(this.tlsCipher).cipher) }));
  private readonly sessions = new TlsSessionCache();
  private readonly pingIntervalMs: number;
  /** Streams asked for so far (the second one starts keeping a spare connection). */
  private streamsAsked = 0;
  private readonly multiplex: boolean;
  private mux: ServiceMux | null = null;

  constructor(opts: DevstreamsClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.hub);
    } catch {
      throw new TypeError(`hub URL is not a URL: ${JSON.stringify(opts.hub)}`);
    }
    if (base.protocol !== 'https:') throw new TypeError(`hub URL must be https:// (got ${base.protocol})`);
    if (!opts.token) throw new TypeError('a service token is required');
    this.ca = opts.ca;
    this.log = opts.logger ?? silentLogger;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 15_000;
    this.multiplex = opts.multiplex ?? true;
    this.tlsCipher = opts.tlsCipher ?? 'auto';
    const agent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      minVersion: 'TLSv1.2', // the hub's name and chain are always verified; there is no switch to skip that
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    });
    this.endpoint = { base, token: opts.token, agent, ...(opts.caSource !== undefined ? { caSource: opts.caSource } : {}) };
  }

  /** The hub's base URL (for messages). */
  get hub(): string {
    return this.endpoint.base.origin;
  }

  /**
   * Opens a stream to `service` on `device`. Resolves with the stream once the hub has the
   * device's yes and this side has joined; the device side joins within the handshake deadline
   * (bytes written before that wait in the relay's TCP buffers).
   *
   * With `multiplex` (the default), the stream is an OPEN on this client's one connection to the
   * hub, answered once the device has. Otherwise, or when the hub does not offer that connection,
   * one request does it all: a WebSocket upgrade to the hub's open-and-connect endpoint. A hub
   * without that endpoint (404 NOT_FOUND) gets the two steps instead: `POST .../streams`, then the
   * relay URL it answers.
   */
  async openStream(device: string, service: string, opts: OpenStreamOptions = {}): Promise<WsDuplex> {
    const started = Date.now();
    const body: OpenStreamBody = { service, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
    const secureContext = this.relayContext();
    const answerMs = (opts.timeoutMs ?? LIMITS.maxHandshakeMs) + ANSWER_SLACK_MS;
    const url = hubUrl(this.endpoint.base, apiPaths.connectStream(device, body));
    url.protocol = 'wss:';
    if (this.multiplex) {
      this.mux ??= new ServiceMux({
        hub: this.endpoint.base,
        token: this.endpoint.token,
        secureContext,
        sessions: this.sessions,
        upgradeTimeoutMs: RELAY_UPGRADE_TIMEOUT_MS,
        pingIntervalMs: this.pingIntervalMs,
      });
      const opened = await this.mux.open({ device, ...body }, { timeoutMs: answerMs, signal: opts.signal });
      if (opened) {
        const stream = new WsDuplex(opened.channel);
        opened.channel.resume(); // handed over paused, so nothing arrives before WsDuplex listens
        this.log.info({ device, service, streamId: opened.streamId, setupMs: Date.now() - started }, 'stream open');
        return stream;
      }
    }
    let streamId = '';
    let stream: WsDuplex;
    try {
      // The dial takes the connection kept waiting for it, if there is one (below).
      const dial = dialRelay({
        url: url.href,
        token: this.endpoint.token,
        what: `GET ${url.pathname}`,
        target: this.endpoint.base.origin,
        ...(this.endpoint.caSource !== undefined ? { caSource: this.endpoint.caSource } : {}),
        onStreamId: (id) => (streamId = id),
        ...(secureContext ? { secureContext } : {}),
        sessions: this.sessions,
        timeoutMs: answerMs,
        signal: opts.signal,
        pingIntervalMs: this.pingIntervalMs,
      });
      // A client that opens a second stream is likely to open more (`devstreams forward`, a page's
      // requests): from then on, one connection waits for the next stream, its handshakes done
      // (closed unused after 5 s). One stream alone (`devstreams connect`) opens no spare.
      if (this.streamsAsked++ > 0) this.sessions.spare(url, { ...(secureContext ? { secureContext } : {}), minVersion: RELAY_MIN_TLS_VERSION });
      stream = await dial;
    } catch (err) {
      if (!(err instanceof HubRefusalError && err.code === 'NOT_FOUND')) throw err;
      ({ stream, streamId } = await this.openInTwoSteps(device, body, answerMs, secureContext, opts.signal));
    }
    this.log.info({ device, service, streamId, setupMs: Date.now() - started }, 'stream open');
    return stream;
  }

  /** The two-step open for a hub without open-and-connect: the REST call, then the relay dial. */
  private async openInTwoSteps(
    device: string,
    body: OpenStreamBody,
    answerMs: number,
    secureContext: SecureContext | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ stream: WsDuplex; streamId: string }> {
    const answer = await requestJson(this.endpoint, {
      method: 'POST',
      path: apiPaths.openStream(device),
      body,
      schema: OpenStreamResultSchema,
      timeoutMs: answerMs,
      signal,
    });
    const stream = await dialRelay({
      url: answer.url,
      token: answer.token,
      ...(secureContext ? { secureContext } : {}),
      sessions: this.sessions,
      timeoutMs: Math.min(RELAY_UPGRADE_TIMEOUT_MS, Math.max(1_000, answer.expiresAt - Date.now() + ANSWER_SLACK_MS)),
      ...(this.endpoint.caSource !== undefined ? { caSource: this.endpoint.caSource } : {}),
      signal,
      pingIntervalMs: this.pingIntervalMs,
    });
    return { stream, streamId: answer.streamId };
  }

  async listDevices(): Promise<DeviceInfo[]> {
    const answer = await requestJson(this.endpoint, {
      method: 'GET',
      path: apiPaths.devices,
      schema: DeviceListSchema,
      timeoutMs: this.requestTimeoutMs,
    });
    return answer.devices;
  }

  /**
   * One device in full: presence plus its last status (system, last error). With `service`, the hub
   * also refuses (403 FORBIDDEN) when this token may not use that service on any device.
   */
  async getDevice(deviceId: string, opts: { service?: string } = {}): Promise<DeviceInfo> {
    return requestJson(this.endpoint, {
      method: 'GET',
      path: apiPaths.device(deviceId, opts),
      schema: DeviceInfoSchema,
      timeoutMs: this.requestTimeoutMs,
    });
  }

  /** The hub's public endpoints (API, streaming, MQTT) and their ports. */
  async endpoints(): Promise<HubEndpoints> {
    return requestJson(this.endpoint, {
      method: 'GET',
      path: apiPaths.endpoints,
      schema: HubEndpointsSchema,
      timeoutMs: this.requestTimeoutMs,
    });
  }

  /** The hub's stream records, newest first, optionally filtered (device, since epoch ms, result, limit). */
  async listStreams(query: StreamQuery = {}): Promise<StreamRecord[]> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    const answer = await requestJson(this.endpoint, {
      method: 'GET',
      path: qs ? `${apiPaths.streams}?${qs}` : apiPaths.streams,
      schema: StreamListSchema,
      timeoutMs: this.requestTimeoutMs,
    });
    return answer.streams;
  }

  /**
   * Releases the kept-alive HTTPS connections and the spare one, and the multiplexed connection
   * once its last stream ends. Open streams are the caller's and stay open.
   */
  close(): void {
    this.endpoint.agent.destroy();
    this.sessions.closeWaiting();
    this.mux?.close();
  }
}
