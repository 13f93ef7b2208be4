import * as z from './zod.js';
import { ERROR_CODES } from './errors.js';
import { LIMITS } from './limits.js';
import { DeviceLastErrorSchema, DeviceSystemSchema } from './messages.js';

/** The REST API and relay paths, shared by the hub (server) and the service SDK (client). */
export const API_PREFIX = '/api/v1' as const;

export const apiPaths = {
  devices: `${API_PREFIX}/devices`,
  device: (deviceId: string, query: { service?: string } = {}) =>
    `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}${query.service !== undefined ? `?${new URLSearchParams({ service: query.service }).toString()}` : ''}`,
  openStream: (deviceId: string) => `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}/streams`,
  /**
   * Opens a stream and joins it as the service side in one request: a WebSocket upgrade that the
   * hub answers once the device has (ARCHITECTURE "Opening a stream in one request").
   */
  connectStream: (deviceId: string, body: OpenStreamBody) => {
    const q = new URLSearchParams({ service: body.service });
    if (body.timeoutMs !== undefined) q.set('timeoutMs', String(body.timeoutMs));
    return `${API_PREFIX}/devices/${encodeURIComponent(deviceId)}/streams/connect?${q.toString()}`;
  },
  streams: `${API_PREFIX}/streams`,
  /** The hub's public endpoints (for firewall rules). */
  endpoints: `${API_PREFIX}/endpoints`,
  /** The relay endpoint of one stream: both roles dial it, each with its own token. */
  relay: (streamId: string) => `${API_PREFIX}/streams/${streamId}/connect`,
  /** MQTT over WebSocket for devices. */
  mqtt: '/mqtt',
} as const;

/** Matches a relay path and yields the stream id. */
export const RELAY_PATH_PATTERN = /^\/api\/v1\/streams\/([A-Za-z0-9_-]{22})\/connect$/;
/** Matches one device's path and yields the (URL-encoded) device id. */
export const DEVICE_PATH_PATTERN = /^\/api\/v1\/devices\/([^/]{1,200})$/;
/** Matches the open-stream path and yields the (URL-encoded) device id. */
export const OPEN_STREAM_PATH_PATTERN = /^\/api\/v1\/devices\/([^/]{1,200})\/streams$/;

/** Matches the path of an open-and-connect upgrade and yields the (URL-encoded) device id. */
export const CONNECT_STREAM_PATH_PATTERN = /^\/api\/v1\/devices\/([^/]{1,200})\/streams\/connect$/;
/** Response header of an accepted relay upgrade: the stream's id (for logs and the stream records). */
export const STREAM_ID_HEADER = 'devstreams-stream-id';

/** POST /api/v1/devices/{id}/streams */
export const OpenStreamBodySchema = z.strictObject({
  service: z.string().check(z.minLength(1), z.maxLength(LIMITS.maxServiceSpecLength)),
  /** Handshake deadline in ms; the hub clamps it to its configured maximum. */
  timeoutMs: z.optional(z.int().check(z.gte(LIMITS.minHandshakeMs), z.lte(LIMITS.maxHandshakeMs))),
});
export type OpenStreamBody = z.infer<typeof OpenStreamBodySchema>;

/** 201 answer to an open-stream request. */
export const OpenStreamResultSchema = z.strictObject({
  streamId: z.string(),
  device: z.string(),
  service: z.string(),
  /** wss:// URL of the relay endpoint for this stream. */
  url: z.string(),
  /** Single-use token for the service role. */
  token: z.string(),
  expiresAt: z.number(),
});
export type OpenStreamResult = z.infer<typeof OpenStreamResultSchema>;

/** Every non-2xx API answer (and relay upgrade refusal) has this body. */
export const ApiErrorSchema = z.object({
  error: z.object({
    code: z.enum(ERROR_CODES),
    status: z.int(),
    reason: z.string(),
  }),
});
export type ApiError = z.infer<typeof ApiErrorSchema>;

/** The error a refusal's raw body carries, when it is the protocol's error shape (else undefined). */
export function apiErrorOf(body: Buffer): ApiError['error'] | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = ApiErrorSchema.safeParse(json);
  return parsed.success ? parsed.data.error : undefined;
}

export const DeviceInfoSchema = z.object({
  id: z.string(),
  online: z.boolean(),
  /** Epoch ms of the last status change seen by the hub, or null if never seen. */
  lastSeen: z.nullable(z.number()),
  agentVersion: z.nullable(z.string()),
  openStreams: z.nullable(z.number()),
  /** Seconds since the device booted, as of its last status (hub >= 0.2). */
  uptimeSec: z.optional(z.nullable(z.number())),
  /** Epoch ms (device clock) of the last status the device sent. */
  statusAt: z.optional(z.nullable(z.number())),
  /** The device's machine, from its last status: only in `GET /api/v1/devices/{id}`. */
  system: z.optional(z.nullable(DeviceSystemSchema)),
  lastError: z.optional(z.nullable(DeviceLastErrorSchema)),
  /** true when the device is disabled on the hub (it cannot connect); absent otherwise (hub >= 0.2). */
  disabled: z.optional(z.boolean()),
});
export type DeviceInfo = z.infer<typeof DeviceInfoSchema>;
export const DeviceListSchema = z.object({ devices: z.array(DeviceInfoSchema) });

export const STREAM_RESULTS = ['ok', 'refused', 'timeout', 'unpaired', 'error'] as const;
export const STREAM_CLOSERS = ['device', 'service', 'hub', 'none'] as const;

/** One stream's record, kept by the hub. */
export const StreamRecordSchema = z.object({
  streamId: z.string(),
  device: z.string(),
  service: z.string(),
  /** ok: paired and ended; refused: the device or the hub said no; timeout: device never answered; unpaired: a side never came. */
  result: z.enum(STREAM_RESULTS),
  status: z.int(),
  code: z.string(),
  reason: z.string(),
  closedBy: z.enum(STREAM_CLOSERS),
  openedAt: z.number(),
  closedAt: z.number(),
  durationMs: z.number(),
  bytesToDevice: z.number(),
  bytesFromDevice: z.number(),
  /** The name of the service token that asked for the stream (null when unknown). */
  requestedBy: z.optional(z.nullable(z.string())),
});
export type StreamRecord = z.infer<typeof StreamRecordSchema>;
export const StreamListSchema = z.object({ streams: z.array(StreamRecordSchema) });

/**
 * `GET /api/v1/devices/{id}?service=S`: with a service, the hub also answers 403 FORBIDDEN when the
 * token may not use it (`forward` asks before it listens). Unknown or repeated parameters -> 400.
 */
export const DeviceQuerySchema = z.strictObject({
  service: z.optional(z.string().check(z.minLength(1), z.maxLength(LIMITS.maxServiceSpecLength))),
});

/** Most records one `GET /api/v1/streams` returns. */
export const MAX_STREAM_QUERY_LIMIT = 1000;

/** `GET /api/v1/streams?device=&since=&result=&limit=`: since is epoch ms (streams opened at or after it). */
export const StreamQuerySchema = z.strictObject({
  device: z.optional(z.string().check(z.minLength(1), z.maxLength(LIMITS.maxDeviceIdLength))),
  since: z.optional(z.coerce.number().check(z.int(), z.nonnegative())),
  result: z.optional(z.enum(STREAM_RESULTS)),
  limit: z.optional(z.coerce.number().check(z.int(), z.gte(1), z.lte(MAX_STREAM_QUERY_LIMIT))),
});
export type StreamQuery = z.infer<typeof StreamQuerySchema>;

/** `GET /api/v1/endpoints`: what a firewall must let through to reach this hub. */
export const HubEndpointsSchema = z.object({
  /** REST API base, https://. */
  api: z.string(),
  /** The relay URL pattern both sides of a stream dial ({streamId} filled in per stream): the two-step open's second step. */
  streaming: z.string(),
  /** Opening a stream in one request, a WebSocket upgrade ({deviceId} and ?service= filled in) (absent from older hubs' answers). */
  connect: z.optional(z.string()),
  /** The multiplexed endpoints for services and devices (docs/MULTIPLEXING.md); null when the hub does not offer them. */
  relayService: z.optional(z.nullable(z.string())),
  relayDevice: z.optional(z.nullable(z.string())),
  /** MQTT over WebSocket, the agents' default control channel. */
  mqttWebSocket: z.string(),
  /** MQTT over TLS, when the hub has a second listener for it. */
  mqtts: z.nullable(z.string()),
  /** Every TCP port the above use, with what it carries. */
  ports: z.array(z.object({ port: z.int(), protocol: z.literal('tcp'), carries: z.array(z.string()) })),
});
export type HubEndpoints = z.infer<typeof HubEndpointsSchema>;
