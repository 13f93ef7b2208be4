import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, LIMITS, LOG_LEVELS, deepFreeze } from '../protocol/index.js';
import { loadConfigFile } from '../protocol/config-loader.js';

/** `HOST:PORT` (`[v6]:PORT` for IPv6); port 0 asks the OS for a free port. */
const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]{1,253})):(\d{1,5})$/;

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(value: string): HostPort | null {
  const m = HOST_PORT.exec(value);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}

export const HostPortSchema = z
  .string()
  .refine((v) => parseHostPort(v) !== null, 'must be HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:8443)');

const PublicUrlSchema = z
  .string()
  .url('must be a URL like https://hub.example.com:8443')
  .refine((v) => {
    if (!URL.canParse(v)) return false; // zod runs this even when .url() failed
    const u = new URL(v);
    return u.protocol === 'https:' && (u.pathname === '/' || u.pathname === '') && !u.search && !u.hash && !u.username;
  }, 'must be an https:// URL with no path, query or credentials (e.g. https://hub.example.com:8443)');

const timeoutMs = z.number().int().min(LIMITS.minHandshakeMs).max(LIMITS.maxHandshakeMs);

const count = (max: number) => z.number().int().min(1).max(max);
const perSecond = z.number().positive().max(1_000_000);

export const HubLimitsSchema = z.strictObject({
  /** Stream requests (POST .../streams) one service token may make per second (token bucket; burst = 1 s worth). */
  streamRequestsPerTokenPerSecond: perSecond.default(100),
  /** Stream requests one device may receive per second, from all tokens together. */
  streamRequestsPerDevicePerSecond: perSecond.default(50),
  /** Streams one device may have on this hub at once, being set up or open. */
  streamsPerDevice: count(100_000).default(64),
  /** Streams on this hub still in their handshake (asked, or accepted and not yet paired). */
  pendingHandshakes: count(1_000_000).default(1024),
  /** Connections from one source address that have not authenticated yet (all listeners together). */
  unauthenticatedPerAddress: count(100_000).default(256),
  /** A connection must authenticate within this time (TLS handshake, HTTP headers, MQTT CONNECT, relay upgrade). */
  authTimeoutMs: z.number().int().min(200).max(120_000).default(10_000),
  /** Largest MQTT packet a device may send (control payloads are at most 8 KiB). */
  mqttMaxPacketBytes: z.number().int().min(9 * 1024).max(1024 * 1024).default(16 * 1024),
});
export type HubLimits = z.infer<typeof HubLimitsSchema>;

const BrokerUrlSchema = z
  .string()
  .max(2048)
  .refine((v) => {
    if (!URL.canParse(v)) return false;
    const u = new URL(v);
    return (u.protocol === 'mqtts:' || u.protocol === 'wss:') && !!u.hostname && !u.username && !u.password && !u.search && !u.hash;
  }, 'must be mqtts://HOST[:PORT] or wss://HOST[:PORT]/PATH (TLS only, no credentials in the URL)');

/** An external MQTT broker (docs/SCALE.md): the hub then starts no embedded broker. */
export const HubMqttSchema = z
  .strictObject({
    /** Where this hub node connects, with its own account. */
    url: BrokerUrlSchema,
    username: z.string().min(1).max(256),
    password: z.string().min(1).max(1024).optional(),
    passwordFile: z.string().min(1).max(4096).optional(),
    /** CA for the broker's certificate (default: the system's trust store). */
    ca: z.string().min(1).max(4096).optional(),
    /** The broker URL written into agent configs by add-device (default: url). */
    deviceUrl: BrokerUrlSchema.optional(),
    /** Hosts a device accepts in relay URLs, written into agent configs (default: publicUrl's host). */
    relayHosts: z.array(z.string().min(1).max(253).regex(/^[A-Za-z0-9.:-]+$/, 'must be a host name or address')).min(1).max(64).optional(),
    /** Device accounts kept in step with the registry by add-device, rotate-key, disable/enable/remove-device:
     *  `mosquitto-dynsec` (Mosquitto's dynamic security plugin, over MQTT) or `none` (the operator does it). */
    accounts: z.enum(['none', 'mosquitto-dynsec']).default('none'),
    connectTimeoutMs: z.number().int().min(500).max(120_000).default(10_000),
  })
  .superRefine((m, ctx) => {
    if ((m.password === undefined) === (m.passwordFile === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'exactly one of password or passwordFile is required' });
    }
  });
export type HubMqttConfig = z.infer<typeof HubMqttSchema>;

export const HubConfigSchema = z.strictObject({
  /** Where the one TLS port (API, relay, MQTT over WebSocket) listens. */
  listen: HostPortSchema.default('127.0.0.1:8443'),
  /** The https URL devices and services use; default https://localhost:<bound port>. */
  publicUrl: PublicUrlSchema.optional(),
  tls: z.strictObject({
    cert: z.string().min(1),
    key: z.string().min(1),
  }),
  /** The development CA certificate; only copied into agent configs by add-device. */
  ca: z.string().min(1).optional(),
  /** Optional MQTT over TLS on a second port (for agents using mqtts://). */
  mqtts: z.strictObject({ listen: HostPortSchema }).optional(),
  registry: z.string().min(1).default('registry.json'),
  /** Named, scoped service tokens (hub/service-tokens.ts); managed with `devstreams hub token …`. */
  tokens: z.string().min(1).default('tokens.json'),
  /** Legacy: tokens with full scope, digests only. Prefer the tokens file (`hub token create`). */
  serviceTokens: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(64),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest (64 lowercase hex characters)'),
      }),
    )
    .default([]),
  /** How devices may prove their identity at MQTT CONNECT (docs/ARCHITECTURE.md, device tokens). */
  deviceAuth: z
    .strictObject({
      /** Accept a device's static key as the MQTT password (agents with `auth: key`); tokens are always accepted. */
      allowStaticKeys: z.boolean().default(true),
      /** How far ahead a device token's expiry may lie; longer-lived tokens are refused. */
      maxTokenTtlSeconds: z.number().int().min(60).max(7 * 86_400).default(86_400),
    })
    .prefault({}),
  handshake: z
    .strictObject({
      defaultTimeoutMs: timeoutMs.default(60_000),
      maxTimeoutMs: timeoutMs.default(300_000),
    })
    .refine((h) => h.defaultTimeoutMs <= h.maxTimeoutMs, {
      message: 'defaultTimeoutMs must not exceed maxTimeoutMs',
      path: ['defaultTimeoutMs'],
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
  /**
   * Stream WebSockets: a ping every pingIntervalMs; a leg silent for a whole interval is dropped
   * (0: off). multiplex: offer devices one connection for all their streams (docs/MULTIPLEXING.md);
   * false leaves only per-stream WebSockets, which agents then fall back to.
   */
  relay: z
    .strictObject({
      pingIntervalMs: z.number().int().min(0).max(600_000).default(15_000),
      multiplex: z.boolean().default(true),
    })
    .prefault({}),
  /** Stream history: an embedded SQLite file, retention by age and count (docs/ARCHITECTURE.md, stream history). */
  history: z
    .strictObject({
      file: z.string().min(1).max(4096).default('history.sqlite'),
      maxAgeDays: z.number().int().min(1).max(3650).default(30),
      maxRecords: z.number().int().min(100).max(100_000).default(10_000),
    })
    .prefault({}),
  /** Tokens (SHA-256 digests) that may read /metrics besides the service tokens; for Prometheus. */
  metricsTokens: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(64),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest (64 lowercase hex characters)'),
      }),
    )
    .max(64)
    .default([]),
  /** Resource limits against hostile or runaway clients (README "Limits"). */
  limits: HubLimitsSchema.prefault({}),
  /** An external MQTT broker instead of the embedded one (docs/SCALE.md); devices then connect to it. */
  mqtt: HubMqttSchema.optional(),
}).refine((c) => !(c.mqtt && c.mqtts), { message: 'mqtts: not used with an external broker (mqtt); devices connect to the broker', path: ['mqtts'] });

export type HubConfig = z.infer<typeof HubConfigSchema>;

/** A loaded config: paths absolute, the file and its folder remembered, frozen. */
export interface LoadedHubConfig {
  file: string;
  dir: string;
  config: Readonly<HubConfig>;
}

/**
 * Loads the hub config: YAML, defaults, every problem named with the file and field (ConfigError).
 * Relative paths resolve against the config file's folder. `listen` overrides the file's value
 * (the `--listen` flag) and is validated the same way.
 */
export function loadHubConfig(file: string, overrides: { listen?: string } = {}): LoadedHubConfig {
  const abs = resolve(file);
  const dir = dirname(abs);
  const raw = loadConfigFile(abs, HubConfigSchema);
  let listen = raw.listen;
  if (overrides.listen !== undefined) {
    if (!parseHostPort(overrides.listen)) {
      throw new ConfigError('--listen', [`"${overrides.listen}" must be HOST:PORT with a port from 0 to 65535`]);
    }
    listen = overrides.listen;
  }
  const config: HubConfig = {
    ...raw,
    listen,
    tls: { cert: resolve(dir, raw.tls.cert), key: resolve(dir, raw.tls.key) },
    ...(raw.ca !== undefined ? { ca: resolve(dir, raw.ca) } : {}),
    registry: resolve(dir, raw.registry),
    tokens: resolve(dir, raw.tokens),
    serviceTokens: raw.serviceTokens.map((t) => ({ ...t })),
    handshake: { ...raw.handshake },
    history: { ...raw.history, file: resolve(dir, raw.history.file) },
    metricsTokens: raw.metricsTokens.map((t) => ({ ...t })),
    deviceAuth: { ...raw.deviceAuth },
    log: { ...raw.log },
    limits: { ...raw.limits },
    ...(raw.mqtts ? { mqtts: { ...raw.mqtts } } : {}),
    ...(raw.mqtt
      ? {
          mqtt: {
            ...raw.mqtt,
            ...(raw.mqtt.passwordFile !== undefined ? { passwordFile: resolve(dir, raw.mqtt.passwordFile) } : {}),
            ...(raw.mqtt.ca !== undefined ? { ca: resolve(dir, raw.mqtt.ca) } : {}),
            ...(raw.mqtt.relayHosts ? { relayHosts: [...raw.mqtt.relayHosts] } : {}),
          },
        }
      : {}),
  };
  return deepFreeze({ file: abs, dir, config });
}

/** The publicUrl to announce: configured, or https://localhost:<port> (the bound port when known). */
export function publicUrlOf(config: Pick<HubConfig, 'publicUrl' | 'listen'>, boundPort?: number): URL {
  if (config.publicUrl) return new URL(config.publicUrl);
  const port = boundPort ?? parseHostPort(config.listen)!.port;
  return new URL(`https://localhost:${port}`);
}
