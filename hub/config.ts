import { dirname, resolve } from 'node:path';
import * as z from '../protocol/zod.js';
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
  .check(z.refine((v) => parseHostPort(v) !== null, 'must be HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:8443)'));

/** Hosts that are no address to dial: where a hub listens on every interface, not where it is reached. */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '[::]']);

/** The https URL devices and services use: `hub.yaml`'s publicUrl and `hub init --public-url`. */
export const PublicUrlSchema = z.string().check(
  // As a check, not z.url(...) itself, so a non-string still gets the type message, not this one.
  z.url('must be a URL like https://hub.example.com:8443'),
  z.refine((v) => {
    if (!URL.canParse(v)) return false; // zod runs this even when z.url() failed
    const u = new URL(v);
    return u.protocol === 'https:' && (u.pathname === '/' || u.pathname === '') && !u.search && !u.hash && !u.username && !u.password;
  }, 'must be an https:// URL with no path, query or credentials (e.g. https://hub.example.com:8443)'),
  z.refine(
    (v) => !URL.canParse(v) || !WILDCARD_HOSTS.has(new URL(v).hostname),
    'must name the host devices and services dial, not a wildcard address such as 0.0.0.0 (e.g. https://hub.example.com:8443)',
  ),
);

const timeoutMs = z.int().check(z.gte(LIMITS.minHandshakeMs), z.lte(LIMITS.maxHandshakeMs));

const count = (max: number) => z.int().check(z.gte(1), z.lte(max));
const perSecond = z.number().check(z.positive(), z.lte(1_000_000));

export const HubLimitsSchema = z.strictObject({
  /** Stream requests (POST .../streams) one service token may make per second (token bucket; burst = 1 s worth). */
  streamRequestsPerTokenPerSecond: z._default(perSecond, 100),
  /** Stream requests one device may receive per second, from all tokens together. */
  streamRequestsPerDevicePerSecond: z._default(perSecond, 50),
  /** Streams one device may have on this hub at once, being set up or open. */
  streamsPerDevice: z._default(count(100_000), 64),
  /** Streams on this hub still in their handshake (asked, or accepted and not yet paired). */
  pendingHandshakes: z._default(count(1_000_000), 1024),
  /** Connections from one source address that have not authenticated yet (all listeners together). */
  unauthenticatedPerAddress: z._default(count(100_000), 256),
  /** A connection must authenticate within this time (TLS handshake, HTTP headers, MQTT CONNECT, relay upgrade). */
  authTimeoutMs: z._default(z.int().check(z.gte(200), z.lte(120_000)), 10_000),
  /** Largest MQTT packet a device may send (control payloads are at most 8 KiB). */
  mqttMaxPacketBytes: z._default(z.int().check(z.gte(9 * 1024), z.lte(1024 * 1024)), 16 * 1024),
});
export type HubLimits = z.infer<typeof HubLimitsSchema>;

const BrokerUrlSchema = z.string().check(
  z.maxLength(2048),
  z.refine((v) => {
    if (!URL.canParse(v)) return false;
    const u = new URL(v);
    return (u.protocol === 'mqtts:' || u.protocol === 'wss:') && !!u.hostname && !u.username && !u.password && !u.search && !u.hash;
  }, 'must be mqtts://HOST[:PORT] or wss://HOST[:PORT]/PATH (TLS only, no credentials in the URL)'),
);

/** An external MQTT broker (docs/SCALE.md): the hub then starts no embedded broker. */
export const HubMqttSchema = z
  .strictObject({
    /** Where this hub node connects, with its own account. */
    url: BrokerUrlSchema,
    username: z.string().check(z.minLength(1), z.maxLength(256)),
    password: z.optional(z.string().check(z.minLength(1), z.maxLength(1024))),
    passwordFile: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
    /** CA for the broker's certificate (default: the system's trust store). */
    ca: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
    /** The broker URL written into agent configs by add-device (default: url). */
    deviceUrl: z.optional(BrokerUrlSchema),
    /** Hosts a device accepts in relay URLs, written into agent configs (default: publicUrl's host). */
    relayHosts: z.optional(
      z
        .array(z.string().check(z.minLength(1), z.maxLength(253), z.regex(/^[A-Za-z0-9.:-]+$/, 'must be a host name or address')))
        .check(z.minLength(1), z.maxLength(64)),
    ),
    /** Device accounts kept in step with the registry by add-device, rotate-key, disable/enable/remove-device:
     *  `mosquitto-dynsec` (Mosquitto's dynamic security plugin, over MQTT) or `none` (the operator does it). */
    accounts: z._default(z.enum(['none', 'mosquitto-dynsec']), 'none'),
    connectTimeoutMs: z._default(z.int().check(z.gte(500), z.lte(120_000)), 10_000),
  })
  .check(
    z.superRefine((m, ctx) => {
      if ((m.password === undefined) === (m.passwordFile === undefined)) {
        ctx.addIssue({ code: 'custom', message: 'exactly one of password or passwordFile is required' });
      }
    }),
  );
export type HubMqttConfig = z.infer<typeof HubMqttSchema>;

export const HubConfigSchema = z.strictObject({
  /** Where the one TLS port (API, relay, MQTT over WebSocket) listens. */
  listen: z._default(HostPortSchema, '127.0.0.1:8443'),
  /** The https URL devices and services use; default https://localhost:<bound port>. */
  publicUrl: z.optional(PublicUrlSchema),
  tls: z.strictObject({
    cert: z.string().check(z.minLength(1)),
    key: z.string().check(z.minLength(1)),
  }),
  /** The development CA certificate; only copied into agent configs by add-device. */
  ca: z.optional(z.string().check(z.minLength(1))),
  /** Optional MQTT over TLS on a second port (for agents using mqtts://). */
  mqtts: z.optional(z.strictObject({ listen: HostPortSchema })),
  registry: z._default(z.string().check(z.minLength(1)), 'registry.json'),
  /** Named, scoped service tokens (hub/service-tokens.ts); managed with `devstreams hub token …`. */
  tokens: z._default(z.string().check(z.minLength(1)), 'tokens.json'),
  /** Legacy: tokens with full scope, digests only. Prefer the tokens file (`hub token create`). */
  serviceTokens: z._default(
    z.array(
      z.strictObject({
        name: z.string().check(z.minLength(1), z.maxLength(64)),
        sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest (64 lowercase hex characters)')),
      }),
    ),
    [],
  ),
  /** How devices may prove their identity at MQTT CONNECT (docs/ARCHITECTURE.md, device tokens). */
  deviceAuth: z.prefault(
    z.strictObject({
      /** Accept a device's static key as the MQTT password (agents with `auth: key`); tokens are always accepted. */
      allowStaticKeys: z._default(z.boolean(), true),
      /** How far ahead a device token's expiry may lie; longer-lived tokens are refused. */
      maxTokenTtlSeconds: z._default(z.int().check(z.gte(60), z.lte(7 * 86_400)), 86_400),
    }),
    {},
  ),
  handshake: z.prefault(
    z
      .strictObject({
        defaultTimeoutMs: z._default(timeoutMs, 60_000),
        maxTimeoutMs: z._default(timeoutMs, 300_000),
        /**
         * Once the device has accepted a stream, how long its sides have to join it at the relay
         * (the service side of a POSTed stream dials after the 201); then it ends `unpaired`
         * (STREAM_EXPIRED) and frees its slot in limits.streamsPerDevice.
         */
        joinTimeoutMs: z._default(z.int().check(z.gte(100), z.lte(LIMITS.maxHandshakeMs)), 15_000),
      })
      .check(
        z.refine((h) => h.defaultTimeoutMs <= h.maxTimeoutMs, {
          message: 'defaultTimeoutMs must not exceed maxTimeoutMs',
          path: ['defaultTimeoutMs'],
        }),
      ),
    {},
  ),
  log: z.prefault(z.strictObject({ level: z._default(z.enum(LOG_LEVELS), 'info') }), {}),
  /**
   * Stream WebSockets: a ping every pingIntervalMs; a leg silent for a whole interval is dropped
   * (0: off). multiplex: offer devices one connection for all their streams (docs/MULTIPLEXING.md);
   * false leaves only per-stream WebSockets, which agents then fall back to.
   */
  relay: z.prefault(
    z.strictObject({
      pingIntervalMs: z._default(z.int().check(z.gte(0), z.lte(600_000)), 15_000),
      multiplex: z._default(z.boolean(), true),
    }),
    {},
  ),
  /** Stream history: an embedded SQLite file, retention by age and count (docs/ARCHITECTURE.md, stream history). */
  history: z.prefault(
    z.strictObject({
      file: z._default(z.string().check(z.minLength(1), z.maxLength(4096)), 'history.sqlite'),
      maxAgeDays: z._default(z.int().check(z.gte(1), z.lte(3650)), 30),
      maxRecords: z._default(z.int().check(z.gte(100), z.lte(100_000)), 10_000),
    }),
    {},
  ),
  /** Tokens (SHA-256 digests) that may read /metrics besides the service tokens; for Prometheus. */
  metricsTokens: z._default(
    z
      .array(
        z.strictObject({
          name: z.string().check(z.minLength(1), z.maxLength(64)),
          sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest (64 lowercase hex characters)')),
        }),
      )
      .check(z.maxLength(64)),
    [],
  ),
  /** Resource limits against hostile or runaway clients (README "Limits"). */
  limits: z.prefault(HubLimitsSchema, {}),
  /** An external MQTT broker instead of the embedded one (docs/SCALE.md); devices then connect to it. */
  mqtt: z.optional(HubMqttSchema),
}).check(z.refine((c) => !(c.mqtt && c.mqtts), { message: 'mqtts: not used with an external broker (mqtt); devices connect to the broker', path: ['mqtts'] }));

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
