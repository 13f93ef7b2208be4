import https from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import {
  DeviceInfoSchema,
  DeviceListSchema,
  HubEndpointsSchema,
  LIMITS,
  OpenStreamResultSchema,
  type OpenStreamResult,
  StreamListSchema,
  TlsSessionCache,
  apiPaths,
  silentLogger,
  type DeviceInfo,
  type HubEndpoints,
  type Logger,
  type StreamQuery,
  type OpenStreamBody,
  type StreamRecord,
  type WsDuplex,
} from '../protocol/index.js';
import { requestJson, type HubEndpoint } from './http.js';
import { dialRelay } from './relay.js';

export interface DevstreamsClientOptions {
  /** The hub's base URL, https:// only (e.g. https://hub.example.com:8443). */
  hub: string;
  /** Service token, sent as `Authorization: Bearer`. Never logged. */
  token: string;
  /** PEM trust anchors for the hub; when given they replace the system CAs (as Node's `ca` does). */
  ca?: string | Buffer;
  logger?: Logger;
  /** Deadline of a fleet query (devices, streams). Default 30 s. */
  requestTimeoutMs?: number;
  /** Ping interval on each stream WebSocket: a relay silent for a whole interval is dropped. Default 15 s; 0 turns it off. */
  pingIntervalMs?: number;
}

export interface OpenStreamOptions {
  /** Handshake deadline asked of the hub (it clamps it); the hub's default (60 s) when absent. */
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
  /** For relay dials, built on the first one (not per stream). */
  private secureContext: SecureContext | undefined;
  private readonly sessions = new TlsSessionCache();
  /** Where the hub's last answer put the relay: the next stream's relay connection opens there early. */
  private relayOrigin: URL;
  private readonly pingIntervalMs: number;

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
    const agent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      minVersion: 'TLSv1.2', // the hub's name and chain are always verified; there is no switch to skip that
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    });
    this.endpoint = { base, token: opts.token, agent };
    this.relayOrigin = base; // until an answer says otherwise, the relay is the hub itself
  }

  /** The hub's base URL (for messages). */
  get hub(): string {
    return this.endpoint.base.origin;
  }

  /**
   * Asks the hub for a stream to `service` on `device` and dials the relay. Resolves with the
   * stream once the relay accepted it; the device side joins within the handshake deadline (bytes
   * written before that wait in the relay's TCP buffers).
   */
  async openStream(device: string, service: string, opts: OpenStreamOptions = {}): Promise<WsDuplex> {
    const started = Date.now();
    const body: OpenStreamBody = { service, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
    const secureContext = this.ca !== undefined ? (this.secureContext ??= createSecureContext({ ca: this.ca, minVersion: 'TLSv1.2' })) : undefined;
    // The relay's TLS handshake overlaps the wait for the device's answer. It opens where the last
    // answer put the relay (a hub whose public name is not the one this client uses, or a hub node).
    const release = this.sessions.preconnect(this.relayOrigin, { secureContext });
    let stream: WsDuplex;
    let answer: OpenStreamResult;
    try {
      answer = await requestJson(this.endpoint, {
        method: 'POST',
        path: apiPaths.openStream(device),
        body,
        schema: OpenStreamResultSchema,
        timeoutMs: (opts.timeoutMs ?? LIMITS.maxHandshakeMs) + ANSWER_SLACK_MS,
        signal: opts.signal,
      });
      this.relayOrigin = relayOriginOf(answer.url) ?? this.relayOrigin;
      stream = await dialRelay({
        url: answer.url,
        token: answer.token,
        ...(secureContext ? { secureContext } : {}),
        sessions: this.sessions,
        timeoutMs: Math.min(RELAY_UPGRADE_TIMEOUT_MS, Math.max(1_000, answer.expiresAt - Date.now() + ANSWER_SLACK_MS)),
        signal: opts.signal,
        pingIntervalMs: this.pingIntervalMs,
      });
    } finally {
      release();
    }
    this.log.info(
      { device, service, streamId: answer.streamId, setupMs: Date.now() - started },
      'stream open',
    );
    return stream;
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

  /** One device in full: presence plus its last status (system, last error). */
  async getDevice(deviceId: string): Promise<DeviceInfo> {
    return requestJson(this.endpoint, {
      method: 'GET',
      path: apiPaths.device(deviceId),
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

  /** Releases the kept-alive HTTPS connections. Open streams are the caller's and stay open. */
  close(): void {
    this.endpoint.agent.destroy();
  }
}

/** The origin of a relay URL from the hub's answer, if it is a wss:// URL (dialRelay refuses others). */
function relayOriginOf(url: string): URL | undefined {
  try {
    const u = new URL(url);
    return u.protocol === 'wss:' ? new URL(u.origin) : undefined;
  } catch {
    return undefined;
  }
}
