import * as z from './zod.js';
import { DEVICE_STATUSES, ERROR_CODES } from './errors.js';
import { DEVICE_ID_PATTERN, STREAM_ID_PATTERN } from './ids.js';
import { LIMITS } from './limits.js';
import { PROTOCOL_VERSION } from './version.js';

/** MQTT control payloads. Every field is bounded; unknown fields are refused. */

const streamId = z.string().check(z.regex(STREAM_ID_PATTERN, 'must be a stream id (22 base64url characters)'));
const reason = z.string().check(z.maxLength(300));

export const StreamRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  streamId,
  /** An allowlist entry's name, `PORT` or `HOST:PORT`. */
  service: z.string().check(z.minLength(1), z.maxLength(LIMITS.maxServiceSpecLength)),
  /** The relay WebSocket the device dials for this stream; its host must be the hub's. */
  relayUrl: z.url().check(z.maxLength(2048)),
  /** Single-use stream token for the device role. */
  token: z.string().check(z.minLength(16), z.maxLength(512)),
  /** Handshake deadline, epoch milliseconds (hub clock). */
  expiresAt: z.int().check(z.positive()),
  /** Topic the answer goes to; must be one of the device's own response topics. */
  replyTo: z.string().check(z.minLength(1), z.maxLength(256)),
});
export type StreamRequest = z.infer<typeof StreamRequestSchema>;

export const StreamResponseSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  streamId,
  status: z.literal(DEVICE_STATUSES),
  /** 'OK' with status 200, otherwise the refusal's error code. */
  code: z.union([z.literal('OK'), z.enum(ERROR_CODES)]),
  reason,
});
export type StreamResponse = z.infer<typeof StreamResponseSchema>;

const text = (max: number) => z.nullable(z.string().check(z.maxLength(max)));
const count = z.nullable(z.number().check(z.nonnegative()));

/** One network interface in a device status (addresses only; at most 4 of each family). */
export const DeviceInterfaceSchema = z.strictObject({
  name: z.string().check(z.minLength(1), z.maxLength(32)),
  mac: text(32),
  ipv4: z.array(z.string().check(z.maxLength(15))).check(z.maxLength(4)),
  ipv6: z.array(z.string().check(z.maxLength(45))).check(z.maxLength(4)),
});
export type DeviceInterface = z.infer<typeof DeviceInterfaceSchema>;

/**
 * What the agent knows about its machine. Every field is null when the probe failed or the board
 * has no such thing (e.g. no temperature sensor). At most LIMITS.maxStatusInterfaces interfaces.
 */
export const DeviceSystemSchema = z.strictObject({
  os: text(128),
  kernel: text(128),
  /** Board or machine model, e.g. "Raspberry Pi 4 Model B Rev 1.4". */
  board: text(128),
  arch: text(32),
  hostname: text(253),
  /** Seconds since the device booted. */
  uptimeSec: count,
  /** Seconds since the agent started. */
  agentUptimeSec: count,
  /** 1, 5 and 15 minute load averages. */
  loadAvg: z.nullable(z.array(z.number().check(z.nonnegative())).check(z.maxLength(3))),
  cpuCount: count,
  /** Main CPU temperature in degrees Celsius, where the board has a sensor. */
  cpuTempC: z.nullable(z.number().check(z.gte(-100), z.lte(250))),
  memTotalBytes: count,
  memAvailableBytes: count,
  /** The file system mounted on `/`. */
  diskTotalBytes: count,
  diskUsedBytes: count,
  interfaces: z.nullable(z.array(DeviceInterfaceSchema).check(z.maxLength(LIMITS.maxStatusInterfaces))),
});
export type DeviceSystem = z.infer<typeof DeviceSystemSchema>;

/** The agent's most recent error (a failed stream set-up or control-channel problem). */
export const DeviceLastErrorSchema = z.strictObject({
  at: z.int().check(z.nonnegative()),
  code: z.string().check(z.maxLength(64)),
  message: z.string().check(z.maxLength(300)),
});
export type DeviceLastError = z.infer<typeof DeviceLastErrorSchema>;

export const DeviceStatusSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  online: z.boolean(),
  /** Epoch ms at which this status was produced (device clock). */
  at: z.optional(z.int().check(z.nonnegative())),
  agentVersion: z.optional(z.string().check(z.maxLength(64))),
  openStreams: z.optional(z.int().check(z.nonnegative())),
  /** The device's machine (issue 8); absent from older agents and from the last will. */
  system: z.optional(DeviceSystemSchema),
  lastError: z.optional(z.nullable(DeviceLastErrorSchema)),
});
export type DeviceStatusMessage = z.infer<typeof DeviceStatusSchema>;

/** The device-id shape, for schemas outside this file. */
export const DeviceIdSchema = z
  .string()
  .check(
    z.maxLength(LIMITS.maxDeviceIdLength),
    z.regex(DEVICE_ID_PATTERN, 'must be 1-64 letters, digits, ".", "-" or "_", starting with a letter or digit'),
  );

/**
 * Decodes a control payload: size check, JSON parse, schema. Returns a result, never throws, so a
 * hostile payload cannot crash the receiver. `error` names what is wrong.
 */
export function decodePayload<T>(
  schema: z.ZodMiniType<T>,
  payload: Buffer | string,
): { ok: true; value: T } | { ok: false; error: string } {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > LIMITS.maxControlPayloadBytes) {
    return { ok: false, error: `payload is ${size} bytes, over the ${LIMITS.maxControlPayloadBytes}-byte limit` };
  }
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch {
    return { ok: false, error: 'payload is not valid JSON' };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) return { ok: false, error: describeIssues(parsed.error) };
  return { ok: true, value: parsed.data };
}

/** One line naming each bad field: `service: Too big...; expiresAt: Required`. */
export function describeIssues(error: z.core.$ZodError): string {
  return error.issues
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}
