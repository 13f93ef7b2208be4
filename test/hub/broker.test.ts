import { once } from 'node:events';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, topics } from '../../protocol/index.js';
import { connectDevice, startTestHub, until, type TestHub } from './helpers.js';

let t: TestHub;
let keyA: string;
let keyB: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  t = await startTestHub();
  keyA = t.addDevice('dev-a');
  keyB = t.addDevice('dev-b');
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
  await t.stop();
});

async function connect(id: string, key: string, opts: { clientId?: string; online?: boolean } = {}): Promise<MqttClient> {
  const c = await connectDevice(t, id, key, opts);
  clients.push(c);
  return c;
}

function closedPromise(c: MqttClient): Promise<void> {
  return new Promise((resolve) => c.once('close', () => resolve()));
}

describe('embedded broker: authentication', () => {
  it('accepts a registered device with its key and marks it online from its status', async () => {
    const c = await connect('dev-a', keyA);
    expect(c.connected).toBe(true);
    await until(() => t.hub.presence.isOnline('dev-a'), 3000, 'dev-a online');
    expect(t.hub.presence.info('dev-a')).toMatchObject({ id: 'dev-a', online: true, agentVersion: 'test', openStreams: 0 });
    const closing = closedPromise(c);
    c.stream.destroy(); // abrupt loss: the last will and the disconnect both say offline
    await closing;
    await until(() => !t.hub.presence.isOnline('dev-a'), 3000, 'dev-a offline');
  });

  it('refuses a wrong key, an unknown device and a client id that is not the device id', async () => {
    await expect(connect('dev-a', keyB)).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(connect('nobody', keyA)).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(connect('dev-a', keyA, { clientId: 'other' })).rejects.toThrow(/Identifier rejected/i);
    const log = t.logs.text();
    expect(log).toContain('mqtt connection refused');
    // Who tried: the peer's address, for an operator (or fail2ban) to act on.
    for (const l of t.logs.lines().filter((l) => l.msg === 'mqtt connection refused')) expect(l.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(log).not.toContain(keyA);
    expect(log).not.toContain(keyB);
  });

  it('a bad status payload is ignored', async () => {
    const c = await connect('dev-b', keyB);
    await until(() => t.hub.presence.isOnline('dev-b'), 3000, 'dev-b online');
    await c.publishAsync(topics.status('dev-b'), '{"online": "maybe"}', { qos: 1 });
    await c.publishAsync(topics.status('dev-b'), JSON.stringify({ v: PROTOCOL_VERSION, online: true, openStreams: 3 }), { qos: 1 });
    await until(() => t.hub.presence.info('dev-b').openStreams === 3, 3000, 'status update');
    expect(t.hub.presence.isOnline('dev-b')).toBe(true);
    expect(t.logs.text()).toContain('bad status payload ignored');
    await c.endAsync();
  });
});

describe('embedded broker: topic ACL', () => {
  it("lets a device subscribe only to its own request topic, without wildcards", async () => {
    const a = await connect('dev-a', keyA, { online: false });
    const own = await a.subscribeAsync(topics.streamRequest('dev-a'), { qos: 1 });
    expect(own[0]?.qos).toBe(1);
    for (const filter of [topics.streamRequest('dev-b'), '#', topics.deviceTree('dev-a'), 'devstreams/v1/devices/+/streams/request', topics.status('dev-a')]) {
      // SUBACK 0x80: mqtt.js rejects the subscription, the connection stays up.
      await expect(a.subscribeAsync(filter, { qos: 1 }), filter).rejects.toThrow(/Subscribe error/);
    }
    expect(a.connected).toBe(true);
    expect(t.logs.text()).toContain('mqtt subscribe refused');
    await a.endAsync();
  });

  it("drops a device that publishes another device's status, and B's subscribers never see it", async () => {
    const b = await connect('dev-b', keyB);
    await until(() => t.hub.presence.isOnline('dev-b'), 3000, 'dev-b online');
    const a = await connect('dev-a', keyA, { online: false });
    const aClosed = closedPromise(a);
    a.publish(topics.status('dev-b'), JSON.stringify({ v: PROTOCOL_VERSION, online: false }), { qos: 1, retain: true });
    await aClosed;
    expect(t.hub.presence.isOnline('dev-b')).toBe(true);
    expect(t.logs.lines().some((l) => l.msg === 'mqtt publish refused' && l.device === 'dev-a' && l.topic === topics.status('dev-b'))).toBe(true);

    const a2 = await connect('dev-a', keyA, { online: false });
    const a2Closed = closedPromise(a2);
    a2.publish(topics.streamRequest('dev-b'), '{}', { qos: 1 });
    await a2Closed;
    await b.endAsync();
  });

  it('allows a device its own status and response topics', async () => {
    const a = await connect('dev-a', keyA);
    await a.publishAsync(topics.streamResponse('dev-a', 'node1'), '{}', { qos: 1 });
    await a.publishAsync(topics.streamResponse('dev-a'), '{}', { qos: 1 });
    expect(a.connected).toBe(true);
    await a.endAsync();
  });
});

describe('MQTT over WebSocket framing', () => {
  it('sends each MQTT packet to a device as one WebSocket message, not one per piece', async () => {
    const ws = new WebSocket(`wss://localhost:${t.port}/mqtt`, ['mqtt'], { ca: t.ca, perMessageDeflate: false });
    await once(ws, 'open');
    const messages: Buffer[] = [];
    const packets: mqttPacket.Packet[] = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => packets.push(p));
    ws.on('message', (d: Buffer) => {
      messages.push(d);
      parser.parse(d);
    });
    const send = (p: Record<string, unknown>): void => void ws.send(mqttPacket.generate(p as unknown as mqttPacket.Packet));
    send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'dev-b', keepalive: 30, username: 'dev-b', password: Buffer.from(keyB) });
    await until(() => packets.length >= 1, 3000, 'CONNACK');
    send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: topics.streamRequest('dev-b'), qos: 1 }] });
    await until(() => packets.length >= 2, 3000, 'SUBACK');
    send({ cmd: 'publish', topic: topics.status('dev-b'), payload: JSON.stringify({ v: PROTOCOL_VERSION, online: true, agentVersion: 'test', openStreams: 0 }), qos: 1, messageId: 2, retain: true, dup: false });
    await until(() => packets.length >= 3, 3000, 'PUBACK');
    ws.terminate();
    expect(packets.map((p) => p.cmd)).toEqual(['connack', 'suback', 'puback']);
    // One message per packet, each exactly that packet's bytes.
    expect(messages.map((m) => m.length)).toEqual(packets.map((p) => mqttPacket.generate(p).length));
  });
});

describe('mqtts listener', () => {
  it('serves devices over MQTT on TLS on its own port, with the same authentication', async () => {
    const t2 = await startTestHub({ mqtts: { listen: '127.0.0.1:0' } });
    try {
      const key = t2.addDevice('tls-dev');
      const port = t2.hub.server.mqttsPort;
      expect(port).toBeGreaterThan(0);
      const opts = { ca: t2.ca, protocolVersion: 4 as const, clean: true, reconnectPeriod: 0, connectTimeout: 5000, clientId: 'tls-dev', username: 'tls-dev' };
      const c = await mqtt.connectAsync(`mqtts://localhost:${port}`, { ...opts, password: key });
      await c.publishAsync(topics.status('tls-dev'), JSON.stringify({ v: PROTOCOL_VERSION, online: true }), { qos: 1, retain: true });
      await until(() => t2.hub.presence.isOnline('tls-dev'), 3000, 'tls-dev online');
      await c.endAsync();
      await expect(mqtt.connectAsync(`mqtts://localhost:${port}`, { ...opts, password: 'wrong-key-wrong-key' })).rejects.toThrow(/Bad username or password/i);
    } finally {
      await t2.stop();
    }
  });
});
