import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiErrorSchema,
  DeviceListSchema,
  OpenStreamResultSchema,
  PROTOCOL_HEADER,
  StreamListSchema,
  StreamRequestSchema,
  apiPaths,
  topics,
} from '../../protocol/index.js';
import { api, connectDevice, fakeAgent, startTestHub, until, type TestHub } from './helpers.js';

let t: TestHub;
let silent: MqttClient;
let refuser: MqttClient;
let acceptor: MqttClient;
let acceptorRequests: Awaited<ReturnType<typeof fakeAgent>>;

beforeAll(async () => {
  t = await startTestHub();
  t.addDevice('offline-dev');
  silent = await connectDevice(t, 'silent', t.addDevice('silent'));
  refuser = await connectDevice(t, 'refuser', t.addDevice('refuser'));
  acceptor = await connectDevice(t, 'acceptor', t.addDevice('acceptor'));
  await fakeAgent(silent, 'silent', () => null);
  await fakeAgent(refuser, 'refuser', (req) => ({ status: 403, code: 'SERVICE_DENIED', reason: `service "${req.service}" is not allowed` }));
  acceptorRequests = await fakeAgent(acceptor, 'acceptor', () => ({ status: 200, code: 'OK', reason: 'ok' }));
  await until(() => ['silent', 'refuser', 'acceptor'].every((d) => t.hub.presence.isOnline(d)), 3000, 'devices online');
});
afterAll(async () => {
  await Promise.all([silent, refuser, acceptor].map((c) => c.endAsync(true)));
  await t.stop();
});

function expectError(r: { status: number; body: unknown; headers: Record<string, unknown> }, status: number, code: string): string {
  expect(r.status).toBe(status);
  expect(r.headers[PROTOCOL_HEADER]).toBe('1');
  const body = ApiErrorSchema.parse(r.body);
  expect(body.error.code).toBe(code);
  expect(body.error.status).toBe(status);
  return body.error.reason;
}

describe('API authentication and routes', () => {
  it('401 without a token or with a wrong one', async () => {
    expectError(await api(t, 'GET', apiPaths.devices, { token: null }), 401, 'UNAUTHORIZED');
    expectError(await api(t, 'GET', apiPaths.devices, { token: 'x'.repeat(43) }), 401, 'UNAUTHORIZED');
    expectError(await api(t, 'POST', apiPaths.openStream('acceptor'), { token: 'wrong-token-wrong-token', body: { service: 'ssh' } }), 401, 'UNAUTHORIZED');
    const refused = t.logs.lines().filter((l) => l.msg === 'api call without a valid service token');
    expect(refused.length).toBeGreaterThanOrEqual(3);
    for (const l of refused) expect(l.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(acceptorRequests).toHaveLength(0);
  });

  it('426 for a plain request to a WebSocket endpoint, naming the upgrade it needs', async () => {
    for (const [path, subprotocol] of [
      [apiPaths.connectStream('acceptor', { service: 'echo' }), 'devstreams.v1'],
      [apiPaths.relay('A'.repeat(22)), 'devstreams.v1'],
      ['/api/v1/relay/service', 'devstreams.v1.mux'],
      ['/api/v1/relay/device', 'devstreams.v1.mux'],
    ] as const) {
      const r = await api(t, 'GET', path, { token: null });
      const reason = expectError(r, 426, 'VERSION_MISMATCH');
      expect(reason).toBe(`${path.split('?')[0]} needs a WebSocket upgrade: GET with Upgrade: websocket, Connection: Upgrade and subprotocol ${subprotocol}`);
      expect(r.headers.upgrade).toBe('websocket');
    }
  });

  it('GET /api/v1/endpoints names every endpoint a client dials', async () => {
    const r = await api(t, 'GET', apiPaths.endpoints);
    expect(r.status).toBe(200);
    const wss = `wss://localhost:${t.port}`;
    expect(r.body).toMatchObject({
      api: `https://localhost:${t.port}/api/v1`,
      streaming: `${wss}/api/v1/streams/{streamId}/connect`,
      connect: `${wss}/api/v1/devices/{deviceId}/streams/connect`,
      relayService: `${wss}/api/v1/relay/service`,
      relayDevice: `${wss}/api/v1/relay/device`,
      mqttWebSocket: `${wss}/mqtt`,
    });
  });

  it('404 NOT_FOUND for an unknown route', async () => {
    expectError(await api(t, 'GET', '/api/v1/nothing'), 404, 'NOT_FOUND');
    expectError(await api(t, 'GET', apiPaths.openStream('acceptor')), 404, 'NOT_FOUND');
  });

  it('lists every registered device with its presence', async () => {
    const r = await api(t, 'GET', apiPaths.devices);
    expect(r.status).toBe(200);
    expect(r.headers[PROTOCOL_HEADER]).toBe('1');
    const { devices } = DeviceListSchema.parse(r.body);
    expect(devices.map((d) => d.id)).toEqual(['acceptor', 'offline-dev', 'refuser', 'silent']);
    expect(devices.find((d) => d.id === 'offline-dev')).toEqual({
      id: 'offline-dev', online: false, lastSeen: null, agentVersion: null, openStreams: null, uptimeSec: null, statusAt: null,
    });
    expect(devices.find((d) => d.id === 'acceptor')).toMatchObject({ online: true, agentVersion: 'test', openStreams: 0 });
  });
});

describe('POST /api/v1/devices/{id}/streams', () => {
  it('404 DEVICE_UNKNOWN and 503 DEVICE_OFFLINE at once', async () => {
    expectError(await api(t, 'POST', apiPaths.openStream('ghost'), { body: { service: 'ssh' } }), 404, 'DEVICE_UNKNOWN');
    expectError(await api(t, 'POST', apiPaths.openStream('offline-dev'), { body: { service: 'ssh' } }), 503, 'DEVICE_OFFLINE');
  });

  it('400 naming the bad field, 413 for a large body', async () => {
    expect(expectError(await api(t, 'POST', apiPaths.openStream('acceptor'), { body: { service: 'ssh', extra: 1 } }), 400, 'BAD_REQUEST')).toContain('extra');
    expect(expectError(await api(t, 'POST', apiPaths.openStream('acceptor'), { body: { service: 'ssh', timeoutMs: 'soon' } }), 400, 'BAD_REQUEST')).toContain('timeoutMs');
    expect(expectError(await api(t, 'POST', apiPaths.openStream('acceptor'), { body: {} }), 400, 'BAD_REQUEST')).toContain('service');
    expectError(await api(t, 'POST', apiPaths.openStream('acceptor'), { body: '{not json' }), 400, 'BAD_REQUEST');
    expectError(await api(t, 'POST', apiPaths.openStream('acceptor'), { body: { service: 'x'.repeat(20_000) } }), 413, 'PAYLOAD_TOO_LARGE');
    expect(acceptorRequests).toHaveLength(0);
  });

  it("relays the device's refusal with its status and code, and records it", async () => {
    const r = await api(t, 'POST', apiPaths.openStream('refuser'), { body: { service: 'telnet' } });
    expect(expectError(r, 403, 'SERVICE_DENIED')).toBe('service "telnet" is not allowed');
    const { streams } = StreamListSchema.parse((await api(t, 'GET', apiPaths.streams)).body);
    expect(streams[0]).toMatchObject({ device: 'refuser', service: 'telnet', result: 'refused', status: 403, code: 'SERVICE_DENIED' });
  });

  it('201 with the relay URL and a service token; the device got a valid request naming this node', async () => {
    const r = await api(t, 'POST', apiPaths.openStream('acceptor'), { body: { service: 'echo', timeoutMs: 400_000 } });
    expect(r.status).toBe(201);
    expect(r.headers[PROTOCOL_HEADER]).toBe('1');
    const result = OpenStreamResultSchema.parse(r.body);
    expect(result).toMatchObject({ device: 'acceptor', service: 'echo' });
    expect(result.url).toBe(`wss://localhost:${t.port}${apiPaths.relay(result.streamId)}`);
    const req = StreamRequestSchema.parse(acceptorRequests.at(-1));
    expect(req.streamId).toBe(result.streamId);
    expect(req.relayUrl).toBe(result.url);
    expect(req.replyTo).toBe(topics.streamResponse('acceptor', t.hub.nodeId));
    expect(req.token).not.toBe(result.token);
    // timeoutMs (the device's answer deadline) is clamped to handshake.maxTimeoutMs (300 s); the
    // answer's expiresAt is the join deadline, handshake.joinTimeoutMs (15 s) after the device's answer.
    expect(req.expiresAt - Date.now()).toBeLessThanOrEqual(300_000);
    expect(req.expiresAt - Date.now()).toBeGreaterThan(290_000);
    expect(result.expiresAt - Date.now()).toBeLessThanOrEqual(15_000);
    expect(result.expiresAt - Date.now()).toBeGreaterThan(5_000);
  });

  it('504 DEVICE_TIMEOUT when the device never answers (answers for unknown streams or from another device are ignored); recorded', async () => {
    const other = await connectDevice(t, 'imposter', t.addDevice('imposter'), { online: false });
    const before = requestsTo('silent').length;
    const ask = api(t, 'POST', apiPaths.openStream('silent'), { body: { service: 'ssh', timeoutMs: 1000 } });
    await until(() => requestsTo('silent').length > before, 3000, 'request published');
    // The imposter answers on its own response topic for the silent device's stream: ignored.
    const streamId = requestsTo('silent').at(-1)!;
    await other.publishAsync(topics.streamResponse('imposter', t.hub.nodeId), JSON.stringify({ v: 1, streamId, status: 200, code: 'OK', reason: 'ok' }), { qos: 1 });
    await other.publishAsync(topics.streamResponse('imposter', t.hub.nodeId), JSON.stringify({ v: 1, streamId: 'A'.repeat(22), status: 200, code: 'OK', reason: 'ok' }), { qos: 1 });
    expectError(await ask, 504, 'DEVICE_TIMEOUT');
    expect(t.logs.text()).toContain('response from a device that was not asked ignored');
    const { streams } = StreamListSchema.parse((await api(t, 'GET', apiPaths.streams)).body);
    expect(streams[0]).toMatchObject({ streamId, device: 'silent', service: 'ssh', result: 'timeout', status: 504, code: 'DEVICE_TIMEOUT', closedBy: 'none' });
    expect(streams[0]!.durationMs).toBeGreaterThanOrEqual(990);
    await other.endAsync();
  });
});

/** Stream ids the hub requested from `device`, oldest first (from the hub's log). */
function requestsTo(device: string): string[] {
  return t.logs.lines().filter((l) => l.msg === 'stream requested' && l.device === device).map((l) => l.stream as string);
}
