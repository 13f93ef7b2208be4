import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret, newSecret, apiPaths, ApiErrorSchema, OpenStreamResultSchema } from '../../protocol/index.js';
import { HubLimitsSchema, type HubLimits } from '../../hub/config.js';
import { RateLimiter } from '../../hub/rate-limit.js';
import { api, closed, connectDevice, dialRelay, fakeAgent, startTestHub, until, type TestHub } from '../hub/helpers.js';

/** Stream admission limits (hub.yaml `limits`): each refusal is 429 LIMIT_EXCEEDED naming the setting. */

function limits(over: Partial<HubLimits>): HubLimits {
  return { ...HubLimitsSchema.parse({}), ...over };
}

/** A 429's reason, checking its code and its Retry-After (seconds). */
function limitReason(r: { status: number; body: unknown; headers: Record<string, unknown> }, retryAfter: string): string {
  expect(r.status).toBe(429);
  expect(r.headers['retry-after']).toBe(retryAfter);
  const e = ApiErrorSchema.parse(r.body).error;
  expect(e.code).toBe('LIMIT_EXCEEDED');
  expect(e.status).toBe(429);
  return e.reason;
}

describe('RateLimiter (token bucket)', () => {
  it('allows a burst of one second, then the refill rate, per key', () => {
    let now = 0;
    const rl = new RateLimiter({ ratePerSecond: 4, now: () => now });
    expect([1, 2, 3, 4, 5].map(() => rl.take('a'))).toEqual([true, true, true, true, false]);
    expect(rl.take('b')).toBe(true); // another key has its own bucket
    now += 250; // a quarter second refills one token
    expect(rl.take('a')).toBe(true);
    expect(rl.take('a')).toBe(false);
    now += 10_000; // never more than the burst
    expect([1, 2, 3, 4, 5].map(() => rl.take('a'))).toEqual([true, true, true, true, false]);
  });

  it('fractional rates keep a burst of one', () => {
    let now = 0;
    const rl = new RateLimiter({ ratePerSecond: 0.5, now: () => now });
    expect(rl.take('a')).toBe(true);
    expect(rl.take('a')).toBe(false);
    now += 1999;
    expect(rl.take('a')).toBe(false);
    now += 1;
    expect(rl.take('a')).toBe(true);
  });

  it('keeps its memory bounded: full buckets are forgotten first', () => {
    let now = 0;
    const rl = new RateLimiter({ ratePerSecond: 1, maxKeys: 100, now: () => now });
    for (let i = 0; i < 1000; i++) rl.take(`k${i}`);
    expect(rl.size).toBeLessThanOrEqual(100);
    now += 5000;
    for (let i = 0; i < 1000; i++) rl.take(`j${i}`);
    expect(rl.size).toBeLessThanOrEqual(100);
  });
});

/** Rates so low that no refill can happen during a test, however slow the machine: a burst of one. */
const NO_REFILL = 0.001;

describe('stream request rate per service token', () => {
  let t: TestHub;
  const secondToken = newSecret();

  beforeAll(async () => {
    t = await startTestHub({
      limits: limits({ streamRequestsPerTokenPerSecond: NO_REFILL }),
      serviceTokens: [{ name: 'second', sha256: hashSecret(secondToken) }],
    });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('a second request at once gets 429 naming the setting; another token and other calls are unaffected', async () => {
    // Unknown devices: the token's rate is counted before anything else about the request.
    expect((await api(t, 'POST', apiPaths.openStream('ghost-1'), { body: { service: 'ssh' } })).status).toBe(404);
    expect(limitReason(await api(t, 'POST', apiPaths.openStream('ghost-2'), { body: { service: 'ssh' } }), '1000')).toContain(
      'limits.streamRequestsPerTokenPerSecond',
    );
    expect((await api(t, 'POST', apiPaths.openStream('ghost-3'), { token: secondToken, body: { service: 'ssh' } })).status).toBe(404);
    expect((await api(t, 'GET', apiPaths.devices)).status).toBe(200);
  });
});

describe('stream request rate per device', () => {
  let t: TestHub;
  const devices: MqttClient[] = [];

  beforeAll(async () => {
    t = await startTestHub({ limits: limits({ streamRequestsPerDevicePerSecond: NO_REFILL }) });
    for (const id of ['refuser-a', 'refuser-b']) {
      const c = await connectDevice(t, id, t.addDevice(id));
      await fakeAgent(c, id, () => ({ status: 403, code: 'SERVICE_DENIED', reason: 'not allowed' }));
      devices.push(c);
    }
    await until(() => t.hub.presence.isOnline('refuser-a') && t.hub.presence.isOnline('refuser-b'), 3000, 'devices online');
  });
  afterAll(async () => {
    await Promise.all(devices.map((c) => c.endAsync(true)));
    await t?.stop();
  });

  it('a second request to one device at once gets 429 without asking it; another device still answers', async () => {
    const ask = (device: string) => api(t, 'POST', apiPaths.openStream(device), { body: { service: 'x' } });
    expect((await ask('refuser-a')).status).toBe(403);
    // Retry-After: when the bucket holds one request again (1 s at the rates of 1/s and more).
    expect(limitReason(await ask('refuser-a'), '1000')).toContain('limits.streamRequestsPerDevicePerSecond');
    expect((await ask('refuser-b')).status).toBe(403);
  });
});

describe('concurrent streams per device and pending handshakes', () => {
  let t: TestHub;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    t = await startTestHub({ limits: limits({ streamsPerDevice: 2, pendingHandshakes: 3 }) });
    const acceptor = await connectDevice(t, 'acceptor', t.addDevice('acceptor'));
    await fakeAgent(acceptor, 'acceptor', () => ({ status: 200, code: 'OK', reason: 'accepted' }));
    const other = await connectDevice(t, 'other', t.addDevice('other'));
    await fakeAgent(other, 'other', () => ({ status: 200, code: 'OK', reason: 'accepted' }));
    const silent = await connectDevice(t, 'silent', t.addDevice('silent'));
    await fakeAgent(silent, 'silent', () => null);
    clients.push(acceptor, other, silent);
    await until(() => ['acceptor', 'other', 'silent'].every((d) => t.hub.presence.isOnline(d)), 3000, 'devices online');
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await t?.stop();
  });

  it('streamsPerDevice: a third stream to one device gets 429 until one of its streams ends', async () => {
    const open = async (device: string) => api(t, 'POST', apiPaths.openStream(device), { body: { service: 'echo', timeoutMs: 30_000 } });
    const first = OpenStreamResultSchema.parse((await open('acceptor')).body);
    OpenStreamResultSchema.parse((await open('acceptor')).body);
    expect(limitReason(await open('acceptor'), '5')).toContain('limits.streamsPerDevice');
    const other = await open('other');
    expect(other.status).toBe(201);

    // Pair and close the first stream: its slot is free again.
    const svc = await dialRelay(t, first.url, first.token);
    if (!('ws' in svc)) throw new Error(`relay refused: ${JSON.stringify(svc)}`);
    const gone = closed(svc.ws);
    svc.ws.terminate(); // the first side is paused until its peer comes, so no close handshake
    await gone;
    await until(() => t.hub.relay.deviceStreamCount('acceptor') < 2, 3000, 'slot freed');
    expect((await open('acceptor')).status).toBe(201);
    // Clean up: the streams left open expire with the hub.
  });

});

describe('pending handshakes hub-wide', () => {
  let t: TestHub;
  let silent: MqttClient;

  beforeAll(async () => {
    t = await startTestHub({ limits: limits({ pendingHandshakes: 2 }) });
    silent = await connectDevice(t, 'silent', t.addDevice('silent'));
    await fakeAgent(silent, 'silent', () => null);
    await until(() => t.hub.presence.isOnline('silent'), 3000, 'device online');
  });
  afterAll(async () => {
    await silent?.endAsync(true);
    await t?.stop();
  });

  it('past limits.pendingHandshakes unanswered requests, 429 at once; admitted again once they end', async () => {
    const ask = () => api(t, 'POST', apiPaths.openStream('silent'), { body: { service: 'echo', timeoutMs: 1000 } });
    const waiting = [ask(), ask()];
    await until(() => t.hub.relay.handshakeCount() === 2, 3000, 'two handshakes pending');
    expect(limitReason(await ask(), '5')).toContain('limits.pendingHandshakes');
    expect((await Promise.all(waiting)).map((r) => r.status)).toEqual([504, 504]);
    expect(t.hub.relay.handshakeCount()).toBe(0);
    expect((await ask()).status).toBe(504);
  });
});
