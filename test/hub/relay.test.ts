import type { MqttClient } from 'mqtt';
import type { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EOF_FRAME, OpenStreamResultSchema, apiPaths, type StreamRequest } from '../../protocol/index.js';
import { HubLimitsSchema } from '../../hub/config.js';
import { api, closed, connectDevice, recordOf, dialRelay, fakeAgent, nextMessage, startTestHub, until, type TestHub } from './helpers.js';

let t: TestHub;
let device: MqttClient;
let deviceKey: string;
let requests: StreamRequest[];

beforeAll(async () => {
  t = await startTestHub();
  deviceKey = t.addDevice('relay-dev');
  device = await connectDevice(t, 'relay-dev', deviceKey);
  requests = await fakeAgent(device, 'relay-dev', () => ({ status: 200, code: 'OK', reason: 'ok' }));
  await until(() => t.hub.presence.isOnline('relay-dev'), 3000, 'device online');
});
afterAll(async () => {
  await device.endAsync(true);
  await t.stop();
});

/** Opens a stream through the API; returns the service's answer and the request the device got. */
async function openStream(service = 'echo', timeoutMs?: number): Promise<{ url: string; serviceToken: string; deviceToken: string; streamId: string }> {
  const r = await api(t, 'POST', apiPaths.openStream('relay-dev'), { body: { service, ...(timeoutMs ? { timeoutMs } : {}) } });
  expect(r.status).toBe(201);
  const result = OpenStreamResultSchema.parse(r.body);
  const req = requests.find((q) => q.streamId === result.streamId)!;
  return { url: result.url, serviceToken: result.token, deviceToken: req.token, streamId: result.streamId };
}

async function both(s: { url: string; serviceToken: string; deviceToken: string }): Promise<{ dev: WebSocket; svc: WebSocket }> {
  const d = await dialRelay(t, s.url, s.deviceToken);
  if (!('ws' in d)) throw new Error(`device leg refused: ${JSON.stringify(d.body)}`);
  const v = await dialRelay(t, s.url, s.serviceToken);
  if (!('ws' in v)) throw new Error(`service leg refused: ${JSON.stringify(v.body)}`);
  return { dev: d.ws, svc: v.ws };
}

describe('relay', () => {
  it('pairs the two sides and passes bytes both ways, binary as binary and text as text; 1000 stays 1000', async () => {
    const s = await openStream();
    // The device dials first and sends at once: its bytes wait until the service arrives.
    const d = await dialRelay(t, s.url, s.deviceToken);
    if (!('ws' in d)) throw new Error('refused');
    expect(d.ws.protocol).toBe('devstreams.v1');
    d.ws.send(Buffer.from('early bytes'));
    const v = await dialRelay(t, s.url, s.serviceToken);
    if (!('ws' in v)) throw new Error('refused');
    const early = await nextMessage(v.ws);
    expect(early).toEqual({ data: Buffer.from('early bytes'), isBinary: true });

    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
    const chunks: Buffer[] = [];
    const got = new Promise<void>((resolve) =>
      d.ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary) return;
        chunks.push(data);
        if (Buffer.concat(chunks).length >= big.length) resolve();
      }),
    );
    for (let i = 0; i < big.length; i += 1024 * 1024) v.ws.send(big.subarray(i, i + 1024 * 1024));
    await got;
    expect(Buffer.concat(chunks).equals(big)).toBe(true);

    const text = nextMessage(d.ws);
    v.ws.send(EOF_FRAME);
    expect(await text).toEqual({ data: Buffer.from(EOF_FRAME), isBinary: false });

    const devClosed = closed(d.ws);
    v.ws.close(1000);
    expect(await devClosed).toEqual({ code: 1000, reason: '' });
    const rec = await recordOf(t, s.streamId);
    expect(rec).toMatchObject({ device: 'relay-dev', service: 'echo', result: 'ok', status: 200, code: 'OK', closedBy: 'service', bytesToDevice: big.length, bytesFromDevice: 11 });
    const line = t.logs.lines().find((l) => l.msg === 'stream ended' && l.streamId === s.streamId);
    expect(line).toMatchObject({ device: 'relay-dev', service: 'echo', result: 'ok', closedBy: 'service', bytesToDevice: big.length, bytesFromDevice: 11 });
    expect(typeof line!.durationMs).toBe('number');
  });

  it('carries an abnormal close with its code and reason to the other side', async () => {
    const s = await openStream();
    const { dev, svc } = await both(s);
    const svcClosed = closed(svc);
    dev.close(4503, 'target reset');
    expect(await svcClosed).toEqual({ code: 4503, reason: 'target reset' });
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'error', code: 'TARGET_UNREACHABLE', status: 503, closedBy: 'device', reason: 'target reset' });
  });

  it('a message over 1 MiB closes its sender with 1009, the other side with 1009 and a reason; recorded PAYLOAD_TOO_LARGE', async () => {
    const s = await openStream();
    const { dev, svc } = await both(s);
    const devClosed = closed(dev);
    const svcClosed = closed(svc);
    svc.send(Buffer.alloc(1024 * 1024 + 1));
    const reason = 'a message over 1 MiB from the service side';
    expect(await devClosed).toEqual({ code: 1009, reason });
    expect((await svcClosed).code).toBe(1009);
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'error', code: 'PAYLOAD_TOO_LARGE', status: 413, closedBy: 'service', reason });
  });

  it('turns an abrupt loss of one side into 4502 for the other', async () => {
    const s = await openStream();
    const { dev, svc } = await both(s);
    const devClosed = closed(dev);
    svc.terminate();
    expect((await devClosed).code).toBe(4502);
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'error', code: 'PEER_GONE', closedBy: 'service' });
  });

  it('refuses before the upgrade: 409 on token reuse, 401 for a wrong or foreign token, 426 without the subprotocol', async () => {
    const s = await openStream();
    const other = await openStream();
    const wrongProto = await dialRelay(t, s.url, s.serviceToken, { protocol: 'mqtt' });
    expect(wrongProto).toMatchObject({ status: 426, body: { error: { code: 'VERSION_MISMATCH', status: 426 } } });
    expect(await dialRelay(t, s.url, null)).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
    expect(await dialRelay(t, s.url, 'z'.repeat(43))).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
    expect(await dialRelay(t, s.url, other.deviceToken)).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
    const { dev, svc } = await both(s);
    expect(await dialRelay(t, s.url, s.serviceToken)).toMatchObject({
      status: 409,
      body: { error: { code: 'TOKEN_USED', status: 409, reason: "this stream's single-use service-side stream token was already used" } },
    });
    expect(await dialRelay(t, s.url, s.deviceToken)).toMatchObject({ status: 409, body: { error: { code: 'TOKEN_USED' } } });
    // The refusals did not disturb the paired stream.
    const echo = nextMessage(svc);
    dev.send(Buffer.from('still here'));
    expect((await echo).data.toString()).toBe('still here');
    const c = closed(svc);
    dev.close(1000);
    await c;
  });

  it('drops a stream not paired by its deadline: 4410 to the waiting side, 410 after, recorded unpaired', async () => {
    const s = await openStream('ssh', 1000);
    const d = await dialRelay(t, s.url, s.deviceToken);
    if (!('ws' in d)) throw new Error('refused');
    const c = await closed(d.ws);
    expect(c.code).toBe(4410);
    expect(await dialRelay(t, s.url, s.serviceToken)).toMatchObject({ status: 410, body: { error: { code: 'STREAM_EXPIRED' } } });
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'unpaired', code: 'STREAM_EXPIRED', status: 410, closedBy: 'hub', service: 'ssh' });
  });

  it('never logs a secret', () => {
    const text = t.logs.text();
    expect(text).not.toContain(deviceKey);
    expect(text).not.toContain(t.token);
    for (const r of requests) expect(text).not.toContain(r.token);
  });
});

describe('the join deadline (handshake.joinTimeoutMs)', () => {
  it('a POSTed stream its service side never joins ends unpaired soon after the device accepted it, and frees its slot', async () => {
    const t2 = await startTestHub({
      handshake: { defaultTimeoutMs: 60_000, maxTimeoutMs: 300_000, joinTimeoutMs: 300 },
      limits: { ...HubLimitsSchema.parse({}), streamsPerDevice: 1 },
    });
    const c = await connectDevice(t2, 'join-dev', t2.addDevice('join-dev'));
    try {
      const seen = await fakeAgent(c, 'join-dev', () => ({ status: 200, code: 'OK', reason: 'ok' }));
      await until(() => t2.hub.presence.isOnline('join-dev'), 3000, 'device online');
      // The caller asks for the longest handshake; that is for the device's answer, not for joining.
      const asked = Date.now();
      const r = await api(t2, 'POST', apiPaths.openStream('join-dev'), { body: { service: 'echo', timeoutMs: 300_000 } });
      expect(r.status).toBe(201);
      const s = OpenStreamResultSchema.parse(r.body);
      expect(s.expiresAt).toBeLessThanOrEqual(Date.now() + 300);
      expect(s.expiresAt).toBeGreaterThanOrEqual(asked + 300);
      // The device joins, as an agent does; the service side never comes.
      const d = await dialRelay(t2, s.url, seen.find((q) => q.streamId === s.streamId)!.token);
      if (!('ws' in d)) throw new Error('device side refused');
      const devClosed = closed(d.ws);
      // Meanwhile the stream holds the device's only slot.
      const held = await api(t2, 'POST', apiPaths.openStream('join-dev'), { body: { service: 'echo' } });
      expect([held.status, held.body.error.code]).toEqual([429, 'LIMIT_EXCEEDED']);
      const reason = "the service side did not join within 300 ms of the device's answer (handshake.joinTimeoutMs)";
      expect(await devClosed).toEqual({ code: 4410, reason });
      expect(await recordOf(t2, s.streamId)).toMatchObject({ result: 'unpaired', code: 'STREAM_EXPIRED', status: 410, closedBy: 'hub', reason });
      expect(await dialRelay(t2, s.url, s.token)).toMatchObject({ status: 410, body: { error: { code: 'STREAM_EXPIRED' } } });
      expect(t2.hub.relay.deviceStreamCount('join-dev')).toBe(0);
      expect((await api(t2, 'POST', apiPaths.openStream('join-dev'), { body: { service: 'echo' } })).status).toBe(201);
    } finally {
      await c.endAsync(true);
      await t2.stop();
    }
  });
});

describe('hub shutdown', () => {
  it('closes open streams with 1001 and stops idempotently', async () => {
    const t2 = await startTestHub();
    const key = t2.addDevice('d');
    const dc = await connectDevice(t2, 'd', key);
    const reqs = await fakeAgent(dc, 'd', () => ({ status: 200, code: 'OK', reason: 'ok' }));
    await until(() => t2.hub.presence.isOnline('d'), 3000, 'online');
    const r = await api(t2, 'POST', apiPaths.openStream('d'), { body: { service: 'echo' } });
    const result = OpenStreamResultSchema.parse(r.body);
    const dv = await dialRelay(t2, result.url, reqs[0]!.token);
    const sv = await dialRelay(t2, result.url, result.token);
    if (!('ws' in dv) || !('ws' in sv)) throw new Error('refused');
    const [a, b] = [closed(dv.ws), closed(sv.ws)];
    const mqttClosed = new Promise<void>((resolve) => dc.once('close', () => resolve()));
    await Promise.all([t2.stop(), t2.hub.stop()]);
    expect((await a).code).toBe(1001);
    expect((await b).code).toBe(1001);
    await mqttClosed;
    await t2.hub.stop();
    dc.end(true);
  });
});

describe('relay backpressure', () => {
  it('pauses the sender while the receiver does not read, and loses nothing', async () => {
    const s = await openStream();
    const { dev, svc } = await both(s);
    dev.pause(); // the device stops reading: its TCP buffers fill, then the relay's send buffer
    const total = 24 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let sent = 0; sent < total; sent += chunk.length) svc.send(chunk);
    await until(() => t.hub.relay.backpressuredCount() === 1, 5000, 'relay to pause the service side');
    let received = 0;
    const all = new Promise<void>((resolve) =>
      dev.on('message', (data: Buffer) => {
        received += data.length;
        if (received === total) resolve();
      }),
    );
    dev.resume();
    await all;
    await until(() => t.hub.relay.backpressuredCount() === 0, 3000, 'relay to resume');
    const c = closed(dev);
    svc.close(1000);
    await c;
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'ok', bytesToDevice: total });
  });
});
