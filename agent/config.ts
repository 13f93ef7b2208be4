import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import {
  ConfigError,
  LOG_LEVELS,
  SERVICE_NAME_PATTERN,
  deepFreeze,
  isDeviceId,
  isLoopbackHost,
  TLS_CIPHER_CHOICES,
} from '../protocol/index.js';
import { loadConfigFile } from '../protocol/config-loader.js';
import * as z from '../protocol/zod.js';
import { proxyUrlProblem } from './proxy.js';

/**
 * The agent's config file (YAML), one schema. Strict objects everywhere, so a typo is an error.
 * Relative paths (keyFile, ca) resolve against the config file's folder; see loadAgentConfig.
 */

const HUB_URL_PROTOCOLS = ['wss:', 'mqtts:'];
/** A host name or an IP literal; the same shape a `HOST:PORT` service spec can name. */
const HOSTNAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const MAX_ALLOW_ENTRIES = 256;
const MAX_KEY_BYTES = 1024;
const MAX_CA_BYTES = 256 * 1024;

const HubSchema = z.strictObject({
  url: z.string().check(
    z.maxLength(2048),
    z.superRefine((s, ctx) => {
      const problem = hubUrlProblem(s);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  ),
  deviceId: z.string().check(z.refine(isDeviceId, 'must be 1-64 letters, digits, ".", "-" or "_", starting with a letter or digit')),
  keyFile: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
  key: z.optional(z.string().check(z.minLength(16, 'must be at least 16 characters'), z.maxLength(512))),
  ca: z.optional(z.string().check(z.minLength(1), z.maxLength(4096))),
  /** How the agent proves its identity: `token` (default) sends an expiring token signed with the
   *  key, so the key never crosses the wire; `key` sends the key itself (the hub may refuse that). */
  auth: z._default(z.enum(['token', 'key']), 'token'),
  /** The cipher asked for first on the hub connections: auto (default) measures AES-GCM and
   *  ChaCha20-Poly1305 on this CPU and asks for ChaCha20-Poly1305 where it is clearly faster (a CPU
   *  without AES instructions, e.g. a Raspberry Pi 3 or 4); protocol/tls-ciphers.ts. */
  tlsCipher: z._default(z.enum(TLS_CIPHER_CHOICES), 'auto'),
  /** Lifetime of each token (a new one is minted for every connection attempt). */
  tokenTtlSec: z._default(z.int().check(z.gte(60), z.lte(86_400)), 3600),
  /** HTTP proxy for the hub connections (CONNECT): a URL wins over HTTPS_PROXY, "none" turns it off. */
  proxy: z.optional(
    z.string().check(
      z.maxLength(2048),
      z.refine((s) => s === 'none' || proxyUrlProblem(s) === null, {
        error: (iss) => `${proxyUrlProblem(String(iss.input)) ?? 'invalid'} (or "none")`,
      }),
    ),
  ),
  /** Control channel reconnects: exponential backoff with full jitter, forever. */
  reconnect: z.prefault(
    z
      .strictObject({
        initialDelayMs: z._default(z.int().check(z.gte(10), z.lte(60_000)), 1000),
        maxDelayMs: z._default(z.int().check(z.gte(100), z.lte(3_600_000)), 60_000),
      })
      .check(
        z.refine((r) => r.initialDelayMs <= r.maxDelayMs, { message: 'initialDelayMs must not exceed maxDelayMs', path: ['initialDelayMs'] }),
      ),
    {},
  ),
  /** Stream WebSockets ping the relay this often; a relay silent for a whole interval is dropped. 0 turns it off. */
  pingIntervalMs: z._default(z.int().check(z.gte(0), z.lte(600_000)), 15_000),
  /** Carry all streams to a hub node on one connection when the hub offers it (docs/MULTIPLEXING.md);
   *  false: one WebSocket per stream, as before. */
  multiplex: z._default(z.boolean(), true),
  /** MQTT keep-alive: the broker declares the device offline after 1.5 times this much silence. */
  keepaliveSec: z._default(z.int().check(z.gte(2), z.lte(1200)), 30),
  /** Hosts a relay URL may name (exact host names, case-insensitive). Default: url's host only.
   *  Set when url points at an external MQTT broker, to the hub nodes' public hosts (docs/SCALE.md). */
  relayHosts: z.optional(
    z
      .array(
        z
          .string()
          .check(z.maxLength(253), z.refine((h) => isIP(h) !== 0 || HOSTNAME_PATTERN.test(h), 'must be a host name or an IP address')),
      )
      .check(z.minLength(1), z.maxLength(64)),
  ),
}).check(
  z.superRefine((h, ctx) => {
    if ((h.keyFile === undefined) === (h.key === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'exactly one of keyFile or key is required' });
    }
  }),
);

const AllowEntrySchema = z.pipe(
  z
    .strictObject({
      name: z
        .string()
        .check(
          z.regex(SERVICE_NAME_PATTERN, 'must be 1-32 lowercase letters, digits, ".", "-" or "_", starting with a letter or digit'),
          z.refine((s) => !/^\d+$/.test(s), 'must not be only digits (a request would read it as a port)'),
        ),
      host: z.optional(
        z
          .string()
          .check(z.maxLength(253), z.refine((h) => isIP(h) !== 0 || HOSTNAME_PATTERN.test(h), 'must be a host name or an IP address')),
      ),
      port: z.optional(z.int().check(z.gte(1), z.lte(65535))),
      builtin: z.optional(z.literal('echo')),
    })
    .check(
      z.superRefine((e, ctx) => {
        if (e.builtin !== undefined && (e.port !== undefined || e.host !== undefined)) {
          ctx.addIssue({ code: 'custom', path: ['builtin'], message: 'a builtin entry takes no host or port' });
        } else if (e.builtin === undefined && e.port === undefined) {
          ctx.addIssue({ code: 'custom', path: ['port'], message: 'required (or builtin: echo)' });
        }
      }),
    ),
  z.transform((e): AllowEntry =>
    e.builtin !== undefined
      ? { kind: 'builtin', name: e.name, builtin: e.builtin }
      : { kind: 'tcp', name: e.name, host: (e.host ?? '127.0.0.1').toLowerCase(), port: e.port ?? 0 },
  ),
);

export type AllowEntry =
  | { kind: 'tcp'; name: string; host: string; port: number }
  | { kind: 'builtin'; name: string; builtin: 'echo' };

export const AgentConfigSchema = z
  .strictObject({
    hub: HubSchema,
    allow: z
      .array(AllowEntrySchema)
      .check(
        z.maxLength(MAX_ALLOW_ENTRIES),
        // Runs even when some entries are invalid, so a duplicate is reported with the other problems.
        z.superRefine(
          (entries, ctx) => {
            const seen = new Map<string, number>();
            (entries as unknown[]).forEach((e, i) => {
              const name = (e as { name?: unknown } | null)?.name;
              if (typeof name !== 'string') return;
              const first = seen.get(name);
              if (first === undefined) seen.set(name, i);
              else ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate name "${name}" (also allow.${first})` });
            });
          },
          { when: (payload) => Array.isArray(payload.value) },
        ),
      ),
    limits: z.prefault(
      z.strictObject({
        maxStreams: z._default(z.int().check(z.gte(1), z.lte(1024)), 16),
        connectTimeoutMs: z._default(z.int().check(z.gte(100), z.lte(120_000)), 5000),
      }),
      {},
    ),
    log: z.prefault(z.strictObject({ level: z._default(z.enum(LOG_LEVELS), 'info') }), {}),
    /** SIGTERM/SIGINT: open streams may finish for up to graceMs, then they are closed. */
    shutdown: z.prefault(z.strictObject({ graceMs: z._default(z.int().check(z.gte(0), z.lte(600_000)), 10_000) }), {}),
    /** The device status (README "Observe the fleet"): published on connect, on change, and this often. */
    status: z.prefault(
      z.strictObject({
        intervalSec: z._default(z.int().check(z.gte(10), z.lte(86_400)), 300),
        /** Each probe (temperature, disk, interfaces, ...) gives up after this long; its field is then null. */
        probeTimeoutMs: z._default(z.int().check(z.gte(100), z.lte(60_000)), 5000),
      }),
      {},
    ),
    /**
     * gc: auto (default: throughput on a machine with 2 GiB of memory or more, else memory), memory
     * (V8's own garbage collection) or throughput (external memory counted in V8's heap limit, a
     * fixed heap growing factor, glibc keeping freed memory while streams are open: about 40 % less
     * CPU per byte carried on Node 24, a quarter less per interactive round trip, and about 110 MB
     * more RSS at the peak of bulk transfers, given back when idle; agent/gc-mode.ts,
     * protocol/gc-tuning.ts, protocol/malloc-trim.ts). Applied at start and on SIGHUP.
     */
    runtime: z.prefault(z.strictObject({ gc: z._default(z.enum(['auto', 'memory', 'throughput']), 'auto') }), {}),
    /** Optional Prometheus listener (off unless `listen` is set); loopback only unless allowNonLoopback. */
    metrics: z.prefault(
      z
        .strictObject({
          listen: z.optional(
            z.string().check(z.regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/, 'must be HOST:PORT, e.g. 127.0.0.1:9464')),
          ),
          allowNonLoopback: z._default(z.boolean(), false),
        })
        .check(
          z.refine((m) => m.listen === undefined || m.allowNonLoopback || isLoopbackHost(m.listen.replace(/:\d+$/, '')), {
            message: 'listen must be a loopback address (127.0.0.1, ::1, localhost) unless allowNonLoopback: true',
            path: ['listen'],
          }),
        ),
      {},
    ),
  });

/** The file as written (after defaults). */
export type AgentConfigFile = z.infer<typeof AgentConfigSchema>;

/** The config the agent runs with: the file's settings plus the key and CA read from their files. */
export interface AgentConfig {
  readonly hub: {
    readonly url: string;
    readonly deviceId: string;
    /** The device key (a secret: never log it). */
    readonly key: string;
    /** Extra trust anchor (PEM), if configured. */
    readonly ca?: string;
    /** The key file's absolute path (for the start-up permission check), when the key is in a file. */
    readonly keyFile?: string;
    readonly auth: 'token' | 'key';
    readonly tokenTtlSec: number;
    readonly tlsCipher: AgentConfigFile['hub']['tlsCipher'];
    /** A proxy URL, "none", or undefined (then HTTPS_PROXY/NO_PROXY decide). */
    readonly proxy?: string;
    readonly reconnect: { readonly initialDelayMs: number; readonly maxDelayMs: number };
    readonly pingIntervalMs: number;
    readonly multiplex: boolean;
    readonly keepaliveSec: number;
    /** Hosts a relay URL may name (lowercase); the url's host unless configured. */
    readonly relayHosts: readonly string[];
  };
  readonly allow: readonly AllowEntry[];
  readonly limits: { readonly maxStreams: number; readonly connectTimeoutMs: number };
  readonly log: { readonly level: AgentConfigFile['log']['level'] };
  readonly shutdown: { readonly graceMs: number };
  readonly status: { readonly intervalSec: number; readonly probeTimeoutMs: number };
  readonly metrics: { readonly listen?: string; readonly allowNonLoopback: boolean };
  readonly runtime: Readonly<AgentConfigFile['runtime']>;
}

/**
 * Loads, validates and freezes an agent config file, then reads the key and CA files it names.
 * Throws ConfigError (one line: file, field path, problem) and never includes the key in a message.
 */
export function loadAgentConfig(file: string): AgentConfig {
  const parsed = loadConfigFile(file, AgentConfigSchema);
  return resolveAgentConfig(file, parsed);
}

/** Turns a parsed file into the runtime config; `file` locates relative paths and names errors. */
export function resolveAgentConfig(file: string, parsed: AgentConfigFile): AgentConfig {
  const base = dirname(resolve(file));
  const problems: string[] = [];
  let key = parsed.hub.key;
  if (parsed.hub.keyFile !== undefined) {
    const path = resolve(base, parsed.hub.keyFile);
    const text = readSmallFile(path, MAX_KEY_BYTES, 'hub.keyFile', 'key file', problems);
    if (text !== undefined) {
      key = text.trim();
      if (key.length < 16 || /\s/.test(key)) {
        problems.push(`hub.keyFile: key file ${path} does not hold a key (one line of at least 16 characters)`);
      }
    }
  }
  let ca: string | undefined;
  if (parsed.hub.ca !== undefined) {
    const path = resolve(base, parsed.hub.ca);
    ca = readSmallFile(path, MAX_CA_BYTES, 'hub.ca', 'CA file', problems);
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) {
      problems.push(`hub.ca: CA file ${path} holds no PEM certificate`);
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return deepFreeze({
    hub: {
      url: parsed.hub.url,
      deviceId: parsed.hub.deviceId,
      key: key!,
      ...(parsed.hub.keyFile !== undefined ? { keyFile: resolve(base, parsed.hub.keyFile) } : {}),
      auth: parsed.hub.auth,
      tokenTtlSec: parsed.hub.tokenTtlSec,
      tlsCipher: parsed.hub.tlsCipher,
      ...(ca !== undefined ? { ca } : {}),
      ...(parsed.hub.proxy !== undefined ? { proxy: parsed.hub.proxy } : {}),
      reconnect: parsed.hub.reconnect,
      pingIntervalMs: parsed.hub.pingIntervalMs,
      multiplex: parsed.hub.multiplex,
      keepaliveSec: parsed.hub.keepaliveSec,
      relayHosts: (parsed.hub.relayHosts ?? [new URL(parsed.hub.url).hostname]).map((h) => h.toLowerCase()),
    },
    allow: parsed.allow,
    limits: parsed.limits,
    log: parsed.log,
    shutdown: parsed.shutdown,
    status: parsed.status,
    metrics: parsed.metrics,
    runtime: parsed.runtime,
  });
}

function readSmallFile(path: string, max: number, field: string, what: string, problems: string[]): string | undefined {
  try {
    const buf = readFileSync(path);
    if (buf.length > max) {
      problems.push(`${field}: ${what} ${path} is larger than ${max} bytes`);
      return undefined;
    }
    return buf.toString('utf8');
  } catch (err) {
    problems.push(`${field}: cannot read ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
}

/** Why a hub URL is unusable, or null: wss://HOST[:PORT]/PATH or mqtts://HOST[:PORT], no credentials. */
export function hubUrlProblem(s: string): string | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return 'must be a URL like wss://HOST[:PORT]/mqtt or mqtts://HOST[:PORT]';
  }
  if (!HUB_URL_PROTOCOLS.includes(u.protocol)) return `scheme must be wss: or mqtts: (got ${u.protocol})`;
  if (!u.hostname) return 'must name a host';
  if (u.username || u.password) return 'must not carry credentials (use keyFile)';
  if (u.search || u.hash) return 'must not have a query or fragment';
  if (u.protocol === 'mqtts:' && u.pathname !== '' && u.pathname !== '/') return 'an mqtts: URL has no path';
  return null;
}
