import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { WebSocket } from 'ws';
import {
  PROTOCOL_VERSION,
  StreamListSchema,
  WS_SUBPROTOCOL,
  apiPaths,
  createLogger,
  newSecret,
  topics,
  type Logger,
  type StreamRecord,
  type StreamRequest,
  type StreamResponse,
} from '../../protocol/index.js';
import { loadHubConfig, type HubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { initHub } from '../../hub/init.js';
import { newRegistryEntry, readRegistryFile, writeRegistryFile } from '../../hub/registry.js';

/** Collects a logger's JSON lines in memory. */
export function captureLogger(): { log: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const log = createLogger({ name: 'test-hub', level: 'debug', destination: dest as never });
  const text = (): string => chunks.join('');
  return {
    log,
    text,
    lines: () => text().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** A log destination (for runHubCli's logDestination) that parses each JSON line into `lines`. */
export function jsonLinesDestination(): { destination: Writable; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { destination, lines };
}

export function tempDir(prefix = 'devstreams-hub-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestHub {
  hub: Hub;
  dir: string;
  port: number;
  /** The service token (plaintext). */
  token: string;
  ca: string;
  logs: ReturnType<typeof captureLogger>;
  /** Registers a device directly in the registry; returns its key. */
  addDevice(id: string): string;
  stop(): Promise<void>;
}

/** A hub made by `hub init` in a temp folder, listening on 127.0.0.1:0, logging into memory. */
export async function startTestHub(
  overrides: Partial<Pick<HubConfig, 'handshake' | 'mqtts' | 'limits' | 'serviceTokens' | 'deviceAuth' | 'relay'>> = {},
): Promise<TestHub> {
  const dir = tempDir();
  initHub({ dir, listen: '127.0.0.1:0' });
  const loaded = loadHubConfig(join(dir, 'hub.yaml'));
  const config: HubConfig = { ...loaded.config, ...overrides };
  const logs = captureLogger();
  const hub = new Hub({ config, log: logs.log });
  await hub.start();
  return {
    hub,
    dir,
    port: hub.server.port,
    token: readFileSync(join(dir, 'service.token'), 'utf8'),
    ca: readFileSync(join(dir, 'tls', 'ca.crt'), 'utf8'),
    logs,
    addDevice(id: string): string {
      const key = newSecret();
      const reg = readRegistryFile(config.registry);
      reg.devices[id] = newRegistryEntry(key);
      writeRegistryFile(config.registry, reg);
      return key;
    },
    async stop() {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Connects a device over MQTT-over-WebSocket; rejects on a refused CONNECT. */
export async function connectDevice(
  t: TestHub,
  id: string,
  key: string,
  opts: { clientId?: string; online?: boolean } = {},
): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`wss://localhost:${t.port}/mqtt`, {
    username: id,
    password: key,
    clientId: opts.clientId ?? id,
    ca: t.ca,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    will: { topic: topics.status(id), payload: Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, online: false })), qos: 1, retain: true },
  });
  if (opts.online !== false) {
    await client.publishAsync(topics.status(id), JSON.stringify({ v: PROTOCOL_VERSION, online: true, agentVersion: 'test', openStreams: 0 }), {
      qos: 1,
      retain: true,
    });
  }
  return client;
}

/** Waits until `cond()` holds, checking on every event-loop turn; fails after `ms`. */
export async function until(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A fake agent: subscribes to its request topic and answers each request with `answer(req)` (or not at all). */
export async function fakeAgent(
  client: MqttClient,
  id: string,
  answer: (req: StreamRequest) => Omit<StreamResponse, 'v' | 'streamId'> | null,
): Promise<StreamRequest[]> {
  const seen: StreamRequest[] = [];
  const granted = await client.subscribeAsync(topics.streamRequest(id), { qos: 1 });
  if (granted[0]?.qos !== 1) throw new Error('request topic subscription refused');
  client.on('message', (topic, payload) => {
    if (topic !== topics.streamRequest(id)) return;
    const req = JSON.parse(payload.toString()) as StreamRequest;
    seen.push(req);
    const a = answer(req);
    if (a) void client.publishAsync(req.replyTo, JSON.stringify({ v: PROTOCOL_VERSION, streamId: req.streamId, ...a }), { qos: 1 });
  });
  return seen;
}

export interface JsonAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** One HTTPS request to the hub's API; `body` is sent as JSON unless it is a string. */
export function api(
  t: TestHub,
  method: string,
  path: string,
  opts: { token?: string | null; body?: unknown } = {},
): Promise<JsonAnswer> {
  const token = opts.token === undefined ? t.token : opts.token;
  const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: t.port,
        method,
        path,
        ca: t.ca,
        agent: false,
        headers: {
          ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The hub's record of a stream, waiting up to 3 s for it to be written (undefined if it never is). */
export async function recordOf(t: TestHub, streamId: string): Promise<StreamRecord | undefined> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const rec = StreamListSchema.parse((await api(t, 'GET', apiPaths.streams)).body).streams.find((r) => r.streamId === streamId);
    if (rec || Date.now() >= deadline) return rec;
  }
}

/** Dials a relay URL; resolves with the open socket or the refusal's status and JSON body. */
export function dialRelay(
  t: TestHub,
  url: string,
  token: string | null,
  opts: { protocol?: string } = {},
): Promise<{ ws: WebSocket; headers: Record<string, string | string[] | undefined> } | { status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocol ?? WS_SUBPROTOCOL, {
      ca: t.ca,
      perMessageDeflate: false,
      headers: token !== null ? { authorization: `Bearer ${token}` } : {},
    });
    let headers: Record<string, string | string[] | undefined> = {};
    ws.once('upgrade', (res) => (headers = res.headers));
    ws.once('open', () => resolve({ ws, headers }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    ws.once('error', reject);
  });
}

/** Resolves with a WebSocket's close code and reason. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => {
    if (ws.readyState === ws.CLOSED) return resolve({ code: 1006, reason: '' });
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
}

export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary })));
}
