import {
  DevstreamsError,
  ERRORS,
  PROTOCOL_VERSION,
  StreamResponseSchema,
  apiPaths,
  decodePayload,
  hubSubscriptions,
  isDeviceId,
  isErrorCode,
  newSecret,
  newStreamId,
  parseTopic,
  topics,
  type ErrorCode,
  type Logger,
  type OpenStreamBody,
  type OpenStreamResult,
  type StreamRecord,
  type StreamRequest,
  type StreamResponse,
} from '../protocol/index.js';
import type { ControlBus } from './control-bus.js';
import type { HubConfig } from './config.js';
import type { DevicePresence } from './device-presence.js';
import type { HubRefusals } from './hub-refusals.js';
import type { DeviceRegistry } from './registry.js';
import type { Relay } from './relay.js';
import { callerMayReachDevice, callerMayUseService, serviceForbidden, type Caller } from './service-tokens.js';
import type { StreamLog } from './stream-log.js';
import type { StreamLimits } from './stream-limits.js';

/**
 * The open-stream flow (DESIGN "A stream, start to end", steps 2-4): refuse at once what the hub
 * refuses itself (the token's rate and scope, unknown and offline devices, the device's limits);
 * otherwise register the stream with the relay, publish the request on the device's topic (QoS 1,
 * replyTo naming this hub node) and wait for the device's answer until the handshake deadline.
 * Every outcome is recorded in the stream log: the hub's own refusals through HubRefusals (a
 * request over its token's rate is only counted and logged, see there), the device's refusals,
 * timeouts and failures here, streams the device accepted by the relay.
 */

interface Pending {
  device: string;
  settle: (response: StreamResponse | null) => void;
}

export class StreamRequests {
  private readonly bus: ControlBus;
  private readonly registry: DeviceRegistry;
  private readonly presence: DevicePresence;
  private readonly relay: Relay;
  private readonly streamLog: StreamLog;
  private readonly refusals: HubRefusals;
  private readonly log: Logger;
  private readonly handshake: HubConfig['handshake'];
  private readonly publicUrl: () => URL;
  private readonly nodeId: string;
  private readonly limits: StreamLimits | undefined;
  private readonly pending = new Map<string, Pending>();
  private unsubscribe: (() => Promise<void>) | null = null;
  private stopping = false;

  constructor(opts: {
    bus: ControlBus;
    registry: DeviceRegistry;
    presence: DevicePresence;
    relay: Relay;
    streamLog: StreamLog;
    /** Records the requests the hub refuses itself. */
    refusals: HubRefusals;
    log: Logger;
    handshake: HubConfig['handshake'];
    /** The hub's public https URL (known once the server listens). */
    publicUrl: () => URL;
    /** This hub node's name in replyTo topics. */
    nodeId: string;
    /** Rate and concurrency limits per device and hub-wide (429 LIMIT_EXCEEDED). */
    limits?: StreamLimits;
  }) {
    this.bus = opts.bus;
    this.registry = opts.registry;
    this.presence = opts.presence;
    this.relay = opts.relay;
    this.streamLog = opts.streamLog;
    this.refusals = opts.refusals;
    this.log = opts.log.child({ component: 'streams' });
    this.handshake = opts.handshake;
    this.publicUrl = opts.publicUrl;
    this.nodeId = opts.nodeId;
    this.limits = opts.limits;
  }

  async start(): Promise<void> {
    if (this.unsubscribe) return;
    this.stopping = false;
    this.unsubscribe = await this.bus.subscribe(hubSubscriptions.responses(this.nodeId), (topic, payload) =>
      this.onResponse(topic, payload),
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const unsubscribe = this.unsubscribe;
    this.unsubscribe = null;
    for (const p of this.pending.values()) p.settle(null);
    if (unsubscribe) await unsubscribe();
  }

  /**
   * The first check of a stream request, before its body is read: the token's rate (429
   * LIMIT_EXCEEDED), so a token over its rate learns nothing more and writes no record.
   */
  admitToken(caller: Caller): void {
    try {
      this.limits?.admitToken(caller.name);
    } catch (err) {
      if (err instanceof DevstreamsError) this.refusals.overRate(caller.name, err);
      throw err;
    }
  }

  /**
   * Opens a stream to `deviceId` for `caller` (whose rate admitToken checked), or throws a
   * DevstreamsError carrying the HTTP status and code. The caller's name is kept in the record.
   */
  async open(deviceId: string, body: OpenStreamBody, caller: Caller): Promise<OpenStreamResult> {
    this.admit(deviceId, body.service, caller);
    const requestedBy = caller.name;

    const timeoutMs = Math.min(body.timeoutMs ?? this.handshake.defaultTimeoutMs, this.handshake.maxTimeoutMs);
    const streamId = newStreamId();
    const deviceToken = newSecret();
    const serviceToken = newSecret();
    const openedAt = Date.now();
    const expiresAt = openedAt + timeoutMs;
    const relayUrl = this.relayUrl(streamId);
    const log = this.log.child({ stream: streamId, device: deviceId, service: body.service });
    this.relay.register({ streamId, device: deviceId, service: body.service, deviceToken, serviceToken, openedAt, expiresAt, requestedBy });

    const answer = new Promise<StreamResponse | null>((resolve) => {
      const timer = setTimeout(() => settle(null), timeoutMs);
      const settle = (response: StreamResponse | null): void => {
        clearTimeout(timer);
        this.pending.delete(streamId);
        resolve(response);
      };
      this.pending.set(streamId, { device: deviceId, settle });
    });
    const request: StreamRequest = {
      v: PROTOCOL_VERSION,
      streamId,
      service: body.service,
      relayUrl,
      token: deviceToken,
      expiresAt,
      replyTo: topics.streamResponse(deviceId, this.nodeId),
    };
    const record = (result: StreamRecord['result'], status: number, code: string, reason: string): void => {
      const closedAt = Date.now();
      this.streamLog.add({
        streamId, device: deviceId, service: body.service, requestedBy, result, status, code, reason, closedBy: 'none',
        openedAt, closedAt, durationMs: closedAt - openedAt, bytesToDevice: 0, bytesFromDevice: 0,
      });
    };
    log.debug({ timeoutMs }, 'stream requested');
    try {
      await this.bus.publish(topics.streamRequest(deviceId), JSON.stringify(request), { qos: 1 });
    } catch (err) {
      this.pending.get(streamId)?.settle(null);
      const reason = 'the stream request could not be sent to the device';
      this.relay.cancel(streamId, 'INTERNAL', reason);
      log.error({ err: (err as Error).message }, 'stream request could not be published');
      record('error', ERRORS.INTERNAL.http, 'INTERNAL', reason);
      throw new DevstreamsError('INTERNAL', reason);
    }

    const response = await answer;

    if (response === null) {
      const code: ErrorCode = this.stopping ? 'SHUTTING_DOWN' : 'DEVICE_TIMEOUT';
      const reason = this.stopping ? 'the hub is shutting down' : `device "${deviceId}" did not answer within ${timeoutMs} ms`;
      this.relay.cancel(streamId, code, reason);
      record(this.stopping ? 'error' : 'timeout', ERRORS[code].http, code, reason);
      throw new DevstreamsError(code, reason);
    }
    if (response.status !== 200) {
      const code: ErrorCode = isErrorCode(response.code) ? response.code : 'INTERNAL';
      this.relay.cancel(streamId, code, response.reason);
      record('refused', response.status, code, response.reason);
      throw new DevstreamsError(code, response.reason, response.status);
    }
    const joinBy = this.relay.accept(streamId);
    if (joinBy === null) {
      // The device's side connected and left again before its answer arrived (the relay recorded it).
      throw new DevstreamsError('PEER_GONE', 'the device side closed before the stream was set up');
    }
    log.debug('stream accepted by the device');
    // expiresAt: now the time by which the service side must join (handshake.joinTimeoutMs).
    return { streamId, device: deviceId, service: body.service, url: relayUrl, token: serviceToken, expiresAt: joinBy };
  }

  /**
   * The hub's own checks, before anything is registered or asked of the device: the token's scope
   * first (a token learns nothing of devices it may not reach: an unknown id outside its scope is
   * 403, not 404), then shutting down, registered, online, the device's limits. A refusal is
   * recorded (HubRefusals) and thrown. The device id is checked again here, so that no record ever
   * holds an id that is not one.
   */
  private admit(deviceId: string, service: string, caller: Caller): void {
    if (!isDeviceId(deviceId)) throw new DevstreamsError('BAD_REQUEST', `"${deviceId.slice(0, 80)}" is not a device id`);
    try {
      if (!callerMayReachDevice(caller, deviceId)) {
        throw new DevstreamsError('FORBIDDEN', `service token "${caller.name}" may not reach device "${deviceId}"`);
      }
      if (!callerMayUseService(caller, service)) throw serviceForbidden(caller, service);
      if (this.stopping) throw new DevstreamsError('SHUTTING_DOWN', 'the hub is shutting down');
      if (!this.registry.has(deviceId)) throw new DevstreamsError('DEVICE_UNKNOWN', `no device "${deviceId}" is registered`);
      if (!this.presence.isOnline(deviceId)) {
        const disabled = this.registry.get(deviceId)?.disabled === true;
        throw new DevstreamsError('DEVICE_OFFLINE', disabled ? `device "${deviceId}" is disabled on the hub (devstreams hub enable-device)` : `device "${deviceId}" is offline`);
      }
      this.limits?.admitDevice(deviceId);
    } catch (err) {
      if (err instanceof DevstreamsError) this.refusals.refused({ device: deviceId, service, requestedBy: caller.name }, err);
      throw err;
    }
  }

  private relayUrl(streamId: string): string {
    const u = new URL(apiPaths.relay(streamId), this.publicUrl());
    u.protocol = 'wss:';
    return u.href;
  }

  private onResponse(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.kind !== 'streamResponse' || parsed.nodeId !== this.nodeId) return;
    const decoded = decodePayload(StreamResponseSchema, payload);
    if (!decoded.ok) {
      this.log.warn({ device: parsed.deviceId, err: decoded.error }, 'bad stream response ignored');
      return;
    }
    const response = decoded.value;
    const pending = this.pending.get(response.streamId);
    if (!pending) {
      this.log.debug({ device: parsed.deviceId, stream: response.streamId }, 'response for an unknown or finished stream ignored');
      return;
    }
    if (pending.device !== parsed.deviceId) {
      this.log.warn({ device: parsed.deviceId, stream: response.streamId }, "response from a device that was not asked ignored");
      return;
    }
    pending.settle(response);
  }
}
