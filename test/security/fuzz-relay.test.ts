import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { Agent, request } from 'node:https';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenStreamResultSchema, WS_SUBPROTOCOL, apiPaths } from '../../protocol/index.js';
import { FuzzStack, parseRawResponse, pool, refusalProblem, type RawResponse } from './fuzz-helpers.js';

/**
 * Relay upgrade fuzzing: 10,000 generated WebSocket upgrade requests (paths, stream ids, tokens,
 * subprotocols, handshake headers, stray and malformed header lines), each on its own TLS
 * connection (sessions resumed), sent raw to a real hub. Each batch of 100 also carries the real
 * stream id and service token of a stream opened for it, so accepted upgrades, second use and
 * cross-stream use happen too. Requests to the open-and-connect endpoint carry the hub's service
 * token or garbage, with real and broken queries, so streams are opened there too. Every answer
 * is a 101 or a refusal with status, code and reason.
 */

const BATCHES = 100;
const PER_BATCH = 100;

let stack: FuzzStack;
let http: Agent;
let session: Buffer | undefined;
let sent = 0;
let upgraded = 0;

beforeAll(async () => {
  // Requests that never finish their headers (junk bytes) are closed at limits.authTimeoutMs: 1 s
  // instead of 10 keeps each batch from waiting 10 s on one of them (the suite's longest file).
  stack = await new FuzzStack().start({ limits: { authTimeoutMs: 1000 } });
  http = new Agent({ keepAlive: true, ca: stack.ca, timeout: 2000 });
}, 180_000);
afterAll(async () => {
  http?.destroy();
  await stack?.stop();
}, 60_000);

interface Stream {
  streamId: string;
  token: string;
}

/** Opens a stream to the agent's echo service (its device side dials the relay; the service side is the fuzzer's). */
function openStream(): Promise<Stream> {
  return new Promise((resolve, reject) => {
    // A short deadline: a batch takes a second or two, and the agent holds at most limits.maxStreams (16).
    const body = JSON.stringify({ service: 'echo', timeoutMs: 5_000 });
    const req = request(
      {
        host: '127.0.0.1', servername: 'localhost', port: stack.port, method: 'POST', path: apiPaths.openStream(FuzzStack.AGENT), agent: http,
        headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          try {
            resolve(OpenStreamResultSchema.parse(JSON.parse(text)));
          } catch {
            reject(new Error(`the batch's stream could not be opened: HTTP ${res.statusCode} ${text.slice(0, 300)}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

type Pick<T> = { kind: 'real' } | { kind: 'service' } | { kind: 'other'; value: T };
const id22 = fc.string({ unit: fc.constantFrom(...'ABCabc019_-'.split('')), minLength: 22, maxLength: 22 });
const input = fc.record({
  method: fc.oneof({ weight: 8, arbitrary: fc.constant('GET') }, { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'OPTIONS', 'get', 'G E T') }),
  path: fc.oneof(
    { weight: 6, arbitrary: fc.constant<Pick<string>>({ kind: 'real' }) },
    { weight: 2, arbitrary: id22.map((v): Pick<string> => ({ kind: 'other', value: apiPaths.relay(v) })) },
    // The open-and-connect endpoint (hub/stream-connect.ts): the real agent, and broken device ids.
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(`${apiPaths.openStream(FuzzStack.AGENT)}/connect`, `${apiPaths.openStream(FuzzStack.AGENT)}/connect`, '/api/v1/devices//streams/connect', '/api/v1/devices/%ZZ/streams/connect', `/api/v1/devices/${'x'.repeat(201)}/streams/connect`, '/api/v1/devices/nobody/streams/connect')
        .map((v): Pick<string> => ({ kind: 'other', value: v })),
    },
    {
      weight: 2,
      arbitrary: fc
        .oneof(
          fc.constantFrom('/mqtt', '/', '/api/v1/streams//connect', '/api/v1/streams/x/connect', `/api/v1/streams/${'A'.repeat(23)}/connect`, '/api/v1/devices'),
          fc.string({ unit: fc.constantFrom(...'abc/%.?#=019'.split('')), maxLength: 60 }).map((s) => `/${s}`),
        )
        .map((v): Pick<string> => ({ kind: 'other', value: v })),
    },
  ),
  query: fc.oneof(
    fc.constant(''),
    fc.string({ unit: fc.constantFrom(...'a=&%x1'.split('')), maxLength: 20 }).map((q) => `?${q}`),
    fc.constantFrom('?service=echo', '?service=echo&timeoutMs=5000', '?service=ssh', '?service=echo&service=echo', '?timeoutMs=1', '?service=echo&timeoutMs=-1', '?service=%00'),
  ),
  token: fc.oneof(
    { weight: 5, arbitrary: fc.constant<Pick<string | null>>({ kind: 'real' }) },
    { weight: 2, arbitrary: fc.constant<Pick<string | null>>({ kind: 'service' }) },
    { weight: 3, arbitrary: fc.oneof(fc.constant(null), fc.string({ maxLength: 60 }), fc.constantFrom('x'.repeat(600), '', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).map((v): Pick<string | null> => ({ kind: 'other', value: v })) },
  ),
  authScheme: fc.constantFrom('Bearer ', 'Bearer ', 'Bearer ', 'bearer ', 'Basic ', ''),
  upgrade: fc.constantFrom('websocket', 'websocket', 'websocket', 'WebSocket', 'h2c', '', null),
  connection: fc.constantFrom('Upgrade', 'Upgrade', 'keep-alive, Upgrade', 'close', null),
  key: fc.oneof({ weight: 6, arbitrary: fc.constant('VALID') }, { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.string({ maxLength: 30 })) }),
  version: fc.constantFrom('13', '13', '13', '8', '12', 'x', '', null),
  protocol: fc.oneof(
    { weight: 6, arbitrary: fc.constant<string | null>(WS_SUBPROTOCOL) },
    { weight: 2, arbitrary: fc.constantFrom<string | null>(null, `x, ${WS_SUBPROTOCOL}`, `${WS_SUBPROTOCOL},${WS_SUBPROTOCOL}`, ',', ' devstreams.v1', 'mqtt', 'devstreams.v2', 'a b') },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  ),
  extra: fc.array(fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 80 })), { maxLength: 3 }),
  raw: fc.oneof({ weight: 20, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) }),
});
type Input = typeof input extends fc.Arbitrary<infer T> ? T : never;

function render(i: Input, real: Stream): Buffer {
  if (i.raw) return Buffer.concat([Buffer.from(i.raw), Buffer.from('\r\n\r\n')]);
  const path = i.path.kind === 'other' ? i.path.value : apiPaths.relay(real.streamId);
  const token = i.token.kind === 'real' ? real.token : i.token.kind === 'service' ? stack.token : i.token.value;
  const lines = [`${i.method} ${path}${i.query} HTTP/1.1`, 'Host: localhost'];
  if (i.upgrade !== null) lines.push(`Upgrade: ${i.upgrade}`);
  if (i.connection !== null) lines.push(`Connection: ${i.connection}`);
  if (i.key !== null) lines.push(`Sec-WebSocket-Key: ${i.key === 'VALID' ? randomBytes(16).toString('base64') : i.key}`);
  if (i.version !== null) lines.push(`Sec-WebSocket-Version: ${i.version}`);
  if (i.protocol !== null) lines.push(`Sec-WebSocket-Protocol: ${i.protocol}`);
  if (token !== null) lines.push(`Authorization: ${i.authScheme}${token}`);
  for (const [k, v] of i.extra) lines.push(`${k}: ${v}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8');
}

/** Sends one request on a fresh TLS connection; resolves with the answer (or null if closed without one). */
function exchange(data: Buffer): Promise<RawResponse | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', servername: 'localhost', port: stack.port, ca: stack.ca, ...(session ? { session } : {}) });
    socket.on('session', (s: Buffer) => (session = s));
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (r: RawResponse | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no answer and no close within 15 s for ${JSON.stringify(data.toString().slice(0, 300))}`));
    }, 15_000);
    socket.on('secureConnect', () => socket.write(data));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      const r = parseRawResponse(Buffer.concat(chunks).toString('latin1'));
      if (!r) return;
      const length = Number(r.headers['content-length'] ?? NaN);
      if (r.status === 101 || (Number.isFinite(length) && Buffer.byteLength(r.body, 'latin1') >= length)) finish(r);
    });
    socket.on('error', () => {});
    socket.on('close', () => finish(parseRawResponse(Buffer.concat(chunks).toString('latin1'))));
  });
}

describe('relay upgrade fuzzing (fast-check, 10,000 upgrade requests)', { timeout: 900_000 }, () => {
  it('every upgrade request is accepted or refused with status, code and reason; nothing else changes', async () => {
    let unanswered = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(input, { minLength: PER_BATCH, maxLength: PER_BATCH }), async (batch) => {
        const real = await openStream();
        const problems = await pool(batch, 24, async (i) => {
          const r = await exchange(render(i, real));
          if (!r) {
            if (i.raw) return null; // junk bytes: the connection is closed, there is no HTTP to answer in
            unanswered++;
            return `closed without an answer: ${render(i, real).toString().slice(0, 200)}`;
          }
          if (r.status === 101) {
            upgraded++;
            return null;
          }
          const p = refusalProblem(r.status, r.body);
          if (p === null || r.status === 200) return null; // a plain API GET (no Upgrade header) may succeed
          return `${r.status}: ${p} for ${render(i, real).toString().slice(0, 200)}`;
        });
        sent += batch.length;
        expect(problems.filter(Boolean)).toEqual([]);
        await stack.assertHealthy();
      }),
      { numRuns: BATCHES, endOnFailure: true },
    );
    expect(unanswered).toBe(0);
    expect(sent).toBeGreaterThanOrEqual(10_000);
    expect(upgraded).toBeGreaterThan(0); // the accepted path was exercised too
    await stack.echo.check(64 * 1024);
  });
});
