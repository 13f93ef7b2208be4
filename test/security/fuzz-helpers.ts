import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { parse, stringify } from 'yaml';
import { ApiErrorSchema, ERROR_CODES, apiPaths } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { CliProcess, freePort, runCli } from '../helpers/proc.js';
import { echoTarget, type Target } from '../helpers/targets.js';

/**
 * Shared fixtures of the security suite: a hub and agent as real processes set up for fuzzing,
 * an established echo stream that must survive the whole run, health checks, raw TLS clients, and
 * the check that a refusal names what was wrong.
 */

/** Runs `fn` over `items` with at most `concurrency` in flight; resolves with the results in order. */
export async function pool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

/** Null when `body` is an API error `{error: {code, status, reason}}` matching `status` with a non-empty reason; else the problem. */
export function refusalProblem(status: number, body: string): string | null {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return `status ${status} without a JSON error body: ${JSON.stringify(body.slice(0, 200))}`;
  }
  const parsed = ApiErrorSchema.safeParse(json);
  if (!parsed.success) return `status ${status} with a body that is not an API error: ${body.slice(0, 200)}`;
  const e = parsed.data.error;
  if (e.status !== status) return `body status ${e.status} differs from HTTP status ${status}`;
  if (!(ERROR_CODES as readonly string[]).includes(e.code)) return `unknown code ${e.code}`;
  if (e.reason.trim() === '') return `empty reason for ${e.code}`;
  return null;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The whole answer as received. */
  raw: string;
}

/** Splits a raw HTTP/1.1 answer into status, headers (lower-case names) and body; null if it is not one. */
export function parseRawResponse(raw: string): RawResponse | null {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '');
  if (!m) return null;
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers, body: raw.slice(end + 4), raw };
}

/** A TLS connection to the hub (verifying its certificate), resolved once the handshake is done. */
export async function tlsConnect(port: number, ca: string | Buffer, opts: { session?: Buffer; localAddress?: string } = {}): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', servername: 'localhost', port, ca, ...opts });
  socket.on('error', () => {});
  await Promise.race([
    once(socket, 'secureConnect'),
    once(socket, 'close').then(() => {
      throw new Error('connection closed during the TLS handshake');
    }),
  ]);
  return socket;
}

/** Resolves when `socket` has closed, or rejects after `ms`. */
export function closedWithin(socket: Duplex, ms: number, what = 'socket'): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Collects everything the peer sends until it closes (or `ms` pass: then the socket is destroyed and `timedOut` set). */
export function readUntilClose(socket: Duplex, ms: number): Promise<{ data: Buffer; timedOut: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, ms);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), timedOut });
    });
  });
}

/**
 * A stream through the hub and the agent to a TCP echo target, opened before a fuzz run: `check()`
 * sends random bytes and expects exactly them back.
 */
export class EchoStream {
  private pending: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended = false;
  bytesChecked = 0;

  constructor(readonly stream: Duplex) {
    stream.on('data', (d: Buffer) => {
      this.pending = Buffer.concat([this.pending, d]);
      this.waiter?.();
    });
    stream.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
    stream.on('error', () => {});
  }

  async check(bytes = 4096, timeoutMs = 10_000): Promise<void> {
    const sent = randomBytes(bytes);
    this.stream.write(sent);
    const deadline = Date.now() + timeoutMs;
    while (this.pending.length < bytes) {
      if (this.ended) throw new Error(`the established stream closed after ${this.bytesChecked} checked bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the established stream did not echo ${bytes} bytes within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    const got = this.pending.subarray(0, bytes);
    this.pending = this.pending.subarray(bytes);
    if (!got.equals(sent)) throw new Error('the established stream echoed different bytes');
    this.bytesChecked += bytes;
  }

  close(): void {
    this.stream.destroy();
  }
}

/** GET with a keep-alive agent; resolves with status and body text. */
export function httpsGet(port: number, path: string, token: string, agent: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', servername: 'localhost', port, path, method: 'GET', agent, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export interface FuzzStackOptions {
  /** Extra devices registered (not started): their keys are in `keys`. */
  extraDevices?: string[];
  /** Also listen for MQTT over TLS (mqtts). */
  mqtts?: boolean;
  /** Merged into hub.yaml's `limits`. */
  limits?: Record<string, number>;
}

/**
 * A hub and one agent as real processes (`hub init`, `hub add-device`, run), the agent allowing a
 * TCP echo target (`echo-tcp`) and the built-in echo. Stream request rates are raised so that the
 * fuzzers reach past the rate limits (the limits have their own tests).
 */
export class FuzzStack {
  static readonly AGENT = 'fuzz-agent';
  readonly dir = mkdtempSync(join(tmpdir(), 'devstreams-fuzz-'));
  hub!: CliProcess;
  agent!: CliProcess;
  target!: Target;
  port = 0;
  mqttsPort = 0;
  token = '';
  ca = '';
  readonly keys = new Map<string, string>();
  /** Idle sockets are dropped after 2 s, before the hub's 5 s keep-alive timeout can race a reuse. */
  readonly agentHttp = new Agent({ keepAlive: true, maxSockets: 4, timeout: 2000 });
  echo!: EchoStream;
  private client!: DevstreamsClient;

  async start(opts: FuzzStackOptions = {}): Promise<this> {
    this.target = await echoTarget();
    this.port = await freePort();
    await mustRun(['hub', 'init', '--dir', this.dir, '--listen', `127.0.0.1:${this.port}`]);
    const hubYaml = join(this.dir, 'hub.yaml');
    const cfg = parse(readFileSync(hubYaml, 'utf8')) as Record<string, unknown>;
    cfg.limits = {
      streamRequestsPerTokenPerSecond: 1_000_000,
      streamRequestsPerDevicePerSecond: 1_000_000,
      ...(cfg.limits as object | undefined),
      ...opts.limits,
    };
    if (opts.mqtts) {
      this.mqttsPort = await freePort();
      cfg.mqtts = { listen: `127.0.0.1:${this.mqttsPort}` };
    }
    writeFileSync(hubYaml, stringify(cfg), { mode: 0o600 });
    await mustRun(['hub', 'add-device', FuzzStack.AGENT, '--config', hubYaml, '--allow', `echo-tcp=${this.target.port}`, '--allow', 'echo']);
    for (const id of opts.extraDevices ?? []) {
      await mustRun(['hub', 'add-device', id, '--config', hubYaml]);
      this.keys.set(id, readFileSync(join(this.dir, 'devices', `${id}.key`), 'utf8').trim());
    }
    this.token = readFileSync(join(this.dir, 'service.token'), 'utf8').trim();
    this.ca = readFileSync(join(this.dir, 'tls', 'ca.crt'), 'utf8');
    this.agentHttp.options.ca = this.ca;
    this.hub = new CliProcess(['hub', '--config', hubYaml]);
    await this.hub.waitForLog('hub listening', {}, 60_000);
    this.agent = new CliProcess(['agent', '--config', join(this.dir, 'devices', `${FuzzStack.AGENT}.yaml`)]);
    await this.agent.waitForLog('agent connected', {}, 60_000);
    this.client = new DevstreamsClient({ hub: `https://localhost:${this.port}`, token: this.token, ca: this.ca });
    await this.waitOnline();
    this.echo = new EchoStream(await this.client.openStream(FuzzStack.AGENT, 'echo-tcp'));
    await this.echo.check();
    return this;
  }

  /** Bounded polling of the device list until the agent is online. */
  private async waitOnline(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const d = (await this.client.listDevices()).find((x) => x.id === FuzzStack.AGENT);
      if (d?.online) return;
      if (Date.now() > deadline) throw new Error('fuzz agent not online');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * After each batch: neither process died, the hub answers the API with the agent online, and
   * the established stream still echoes its bytes.
   */
  async assertHealthy(): Promise<void> {
    for (const [name, p] of [['hub', this.hub], ['agent', this.agent]] as const) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${name} process died (${p.child.exitCode ?? p.child.signalCode}):\n${p.lines.slice(-20).join('\n')}`);
      }
    }
    const r = await httpsGet(this.port, apiPaths.devices, this.token, this.agentHttp);
    if (r.status !== 200) throw new Error(`hub answered ${r.status} to GET /api/v1/devices: ${r.body}`);
    const devices = (JSON.parse(r.body) as { devices: Array<{ id: string; online: boolean }> }).devices;
    if (!devices.find((d) => d.id === FuzzStack.AGENT)?.online) throw new Error('the fuzz agent is no longer online at the hub');
    await this.echo.check(1024);
  }

  async stop(): Promise<void> {
    this.echo?.close();
    this.client?.close();
    this.agentHttp.destroy();
    if (this.agent) await this.agent.stop();
    if (this.hub) await this.hub.stop();
    await this.target?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function mustRun(args: string[]): Promise<void> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`devstreams ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
}
