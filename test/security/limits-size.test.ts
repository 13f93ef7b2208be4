import tls from 'node:tls';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, LIMITS, OpenStreamResultSchema, PROTOCOL_VERSION, apiPaths, topics, type StreamRequest } from '../../protocol/index.js';
import { HubLimitsSchema } from '../../hub/config.js';
import { api, closed, connectDevice, dialRelay, fakeAgent, nextMessage, startTestHub, until, type TestHub } from '../hub/helpers.js';
import { closedWithin, tlsConnect } from './fuzz-helpers.js';

/**
 * Size limits close the offending connection only: a stream WebSocket message over 1 MiB, a /mqtt
 * WebSocket message over 64 KiB, an MQTT packet over limits.mqttMaxPacketBytes (on mqtts and over
 * /mqtt, also when split across many small writes). Everyone else carries on.
 */

const MAX_PACKET = 10 * 1024;
let t: TestHub;
let bystander: MqttClient;
let acceptor: MqttClient;
let requests: StreamRequest[];

beforeAll(async () => {
  t = await startTestHub({ limits: { ...HubLimitsSchema.parse({}), mqttMaxPacketBytes: MAX_PACKET }, mqtts: { listen: '127.0.0.1:0' } });
  bystander = await connectDevice(t, 'bystander', t.addDevice('bystander'));
  acceptor = await connectDevice(t, 'acceptor', t.addDevice('acceptor'));
  requests = await fakeAgent(acceptor, 'acceptor', () => ({ status: 200, code: 'OK', reason: 'accepted' }));
  for (const id of ['big-ws', 'big-tls', 'split-ws']) t.addDevice(id);
  await until(() => t.hub.presence.isOnline('acceptor') && t.hub.presence.isOnline('bystander'), 3000, 'devices online');
});
afterAll(async () => {
  await Promise.all([bystander, acceptor].map((c) => c?.endAsync(true)));
  await t?.stop();
});

/** The bystander device still publishes (PUBACK) and is online. */
async function bystanderFine(): Promise<void> {
  expect(bystander.connected).toBe(true);
  await bystander.publishAsync(topics.status('bystander'), JSON.stringify({ v: PROTOCOL_VERSION, online: true, openStreams: 1 }), { qos: 1, retain: true });
  expect(t.hub.presence.isOnline('bystander')).toBe(true);
}

async function pairedStream(): Promise<{ service: WebSocket; device: WebSocket }> {
  const r = await api(t, 'POST', apiPaths.openStream('acceptor'), { body: { service: 'echo' } });
  const open = OpenStreamResultSchema.parse(r.body);
  const req = requests.find((q) => q.streamId === open.streamId)!;
  const d = await dialRelay(t, req.relayUrl, req.token);
  const s = await dialRelay(t, open.url, open.token);
  if (!('ws' in d) || !('ws' in s)) throw new Error('relay refused');
  return { service: s.ws, device: d.ws };
}

function connectPacket(id: string, key: string): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: id, username: id, password: Buffer.from(key) } as Packet);
}

describe('size limits close that connection only', () => {
  it('a stream WebSocket message over 1 MiB closes that stream with 1009; another stream keeps flowing', async () => {
    const a = await pairedStream();
    const b = await pairedStream();
    const aClosed = Promise.all([closed(a.service), closed(a.device)]);
    a.service.send(Buffer.alloc(LIMITS.maxDataFrameBytes + 1));
    const [svc, dev] = await aClosed;
    expect(svc.code).toBe(1009);
    // The stream's other side learns why it ended.
    expect(dev).toEqual({ code: ERRORS.PAYLOAD_TOO_LARGE.ws, reason: 'a message over 1 MiB from the service side' });
    const got = nextMessage(b.device);
    b.service.send(Buffer.from('still here'));
    expect((await got).data.toString()).toBe('still here');
    b.service.close(1000);
    b.device.close(1000);
    await bystanderFine();
  });

  it('a /mqtt WebSocket message over 64 KiB closes that connection with 1009', async () => {
    const ws = new WebSocket(`wss://localhost:${t.port}${apiPaths.mqtt}`, 'mqtt', { ca: t.ca });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    const c = closed(ws);
    ws.send(Buffer.alloc(64 * 1024 + 1));
    expect((await c).code).toBe(1009);
    await bystanderFine();
  });

  it('an MQTT packet over limits.mqttMaxPacketBytes on mqtts: closed from its header, before the body is sent', async () => {
    const key = t.addDevice('big-tls');
    const s = await tlsConnect(t.hub.server.mqttsPort, t.ca);
    s.write(connectPacket('big-tls', key));
    await new Promise<void>((resolve) => s.once('data', () => resolve())); // CONNACK
    await until(() => t.hub.broker.isConnected('big-tls'), 3000, 'big-tls connected');
    // A PUBLISH whose fixed header declares MAX_PACKET + 1 bytes; only the header and 2 bytes are sent.
    const n = MAX_PACKET + 1;
    s.write(Buffer.from([0x30, (n & 0x7f) | 0x80, n >> 7, 0x00, 0x05]));
    await closedWithin(s, 3000, 'oversized-packet connection');
    expect(t.logs.lines().some((l) => String(l.msg).includes('limits.mqttMaxPacketBytes'))).toBe(true);
    await bystanderFine();
  });

  it('over /mqtt, a packet split across many small WebSocket messages is measured as one packet', async () => {
    const key = t.addDevice('split-ws');
    const ws = new WebSocket(`wss://localhost:${t.port}${apiPaths.mqtt}`, 'mqtt', { ca: t.ca });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    ws.send(connectPacket('split-ws', key));
    await nextMessage(ws); // CONNACK
    const big = mqttPacket.generate({ cmd: 'publish', topic: topics.status('split-ws'), payload: Buffer.alloc(MAX_PACKET), qos: 0, retain: false, dup: false } as Packet);
    const c = closed(ws);
    for (let i = 0; i < big.length && ws.readyState === ws.OPEN; i += 1000) ws.send(big.subarray(i, i + 1000));
    await c;
    await bystanderFine();
  });

  it('a packet under the limit, split the same way, is delivered', async () => {
    const s = await tlsConnect(t.hub.server.mqttsPort, t.ca);
    const key = t.addDevice('ok-split');
    s.write(connectPacket('ok-split', key));
    await new Promise<void>((resolve) => s.once('data', () => resolve()));
    const status = { v: PROTOCOL_VERSION, online: true, agentVersion: 'x'.repeat(60), openStreams: 3 };
    const pub = mqttPacket.generate({ cmd: 'publish', topic: topics.status('ok-split'), payload: Buffer.from(JSON.stringify(status)), qos: 1, messageId: 7, retain: true, dup: false } as Packet);
    for (let i = 0; i < pub.length; i += 3) s.write(pub.subarray(i, i + 3));
    await until(() => t.hub.presence.get('ok-split')?.openStreams === 3, 3000, 'status delivered');
    s.destroy();
  });
});
