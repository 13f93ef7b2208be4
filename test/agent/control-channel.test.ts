import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tlsModule, { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ControlChannel } from '../../agent/control-channel.js';
import mqttPacket from 'mqtt-packet';
import { PROTOCOL_VERSION, topics } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';
import { testChannel } from './helpers.js';

/** TLS and authentication of the control channel: what the agent refuses, and what the hub refuses. */
let tls: TestTls;
let hub: FakeHub;
let wrongNameHub: FakeHub;
const running: ControlChannel[] = [];

function channel(opts: { url: string; key: string; ca?: string; deviceId?: string; auth?: 'token' | 'key' }) {
  return testChannel(running, { ...opts, deviceId: opts.deviceId ?? 'dev1' });
}

beforeAll(async () => {
  tls = makeTestTls();
  hub = new FakeHub(tls);
  await hub.start();
  // A server whose certificate is trusted (it is the CA itself) but names neither localhost nor 127.0.0.1.
  wrongNameHub = new FakeHub({ cert: tls.ca, key: readFileSync(join(tls.dir, 'ca.key'), 'utf8') });
  await wrongNameHub.start();
});

afterAll(async () => {
  for (const ch of running) await ch.stop();
  await hub?.stop();
  await wrongNameHub?.stop();
});

describe('control channel', () => {
  it('connects over wss with the extra CA and goes offline (retained) on stop', async () => {
    const key = hub.addDevice('dev1');
    const { ch } = channel({ url: hub.url, key, ca: tls.ca });
    await ch.start();
    await once(ch, 'connected');
    expect(ch.connected).toBe(true);
    const from = hub.published.length;
    await ch.stop();
    await ch.stop();
    const off = await hub.waitFor((p) => p.topic === topics.status('dev1') && p.payload.includes('"online":false'), from);
    expect(off).toMatchObject({ retain: true });
    expect(ch.connected).toBe(false);
  });

  it('reconnects on the TLS context it was given, built once, not on a new one per connection', async () => {
    const key = hub.addDevice('dev6');
    const built = vi.spyOn(tlsModule, 'createSecureContext');
    try {
      const { ch } = channel({ url: hub.url, key, deviceId: 'dev6', ca: tls.ca });
      await ch.start();
      await once(ch, 'connected');
      // Node builds a context inside tls.connect for a connection given none (a `ca` option, say):
      // none here, on the first connection or on the reconnect.
      hub.dropMqttClients();
      await once(ch, 'disconnected');
      await once(ch, 'connected');
      expect(built).not.toHaveBeenCalled();
      await ch.stop();
    } finally {
      built.mockRestore();
    }
  });

  it('sends each MQTT packet once connected as one WebSocket message, not one per piece', async () => {
    const key = hub.addDevice('dev5');
    const { ch } = channel({ url: hub.url, key, deviceId: 'dev5', ca: tls.ca });
    const sizes = hub.mqttMessageSizes;
    await ch.start();
    await once(ch, 'connected');
    const from = sizes.length;
    const p0 = hub.published.length;
    ch.respond(topics.streamResponse('dev5'), { v: PROTOCOL_VERSION, streamId: 'f'.repeat(32), status: 200, code: 'OK', reason: 'accepted' });
    const got = await hub.waitFor((m) => m.topic === topics.streamResponse('dev5'), p0);
    const packet = mqttPacket.generate({ cmd: 'publish', topic: got.topic, payload: Buffer.from(got.payload), qos: 1, messageId: 1, retain: false, dup: false });
    // The broker has parsed it, so its bytes have all arrived. mqtt-packet writes a PUBLISH in six
    // pieces, the smallest one byte; coalesced, what one tick wrote (here perhaps the status PUBLISH
    // the channel sends on connecting, too) leaves as one message.
    const since = sizes.slice(from);
    expect(since.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(packet.length);
    expect(since.length).toBeLessThanOrEqual(2);
    expect(Math.min(...since)).toBeGreaterThanOrEqual(4);
    await ch.stop();
  });

  it('checks the hub certificate host name, not only the chain', async () => {
    const key = wrongNameHub.addDevice('dev1');
    const { ch, logs } = channel({ url: wrongNameHub.url, key, ca: tls.ca });
    await ch.start();
    const line = await logs.waitFor((l) => l.msg === 'control channel error');
    expect(line.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(ch.connected).toBe(false);
    await ch.stop();
  });

  it('does not trust the hub without its CA', async () => {
    const key = hub.addDevice('dev2');
    const { ch, logs } = channel({ url: hub.url, key, deviceId: 'dev2' });
    await ch.start();
    const line = await logs.waitFor((l) => l.msg === 'control channel error');
    expect(String(line.code)).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/);
    await ch.stop();
  });

  it('reports a refused key without logging it', async () => {
    hub.addDevice('dev3');
    const wrongKey = 'wrong-key-' + 'z'.repeat(40);
    const { ch, logs } = channel({ url: hub.url, key: wrongKey, deviceId: 'dev3', ca: tls.ca });
    await ch.start();
    const line = await logs.waitFor((l) => l.msg === 'control channel error');
    expect(line.code).toBe(5);
    expect(logs.text()).not.toContain(wrongKey);
    await ch.stop();
  });

  it('also speaks mqtts:// (MQTT over TLS)', async () => {
    const broker = await Aedes.createBroker({ authenticate: (_c, u, p, done) => done(null, u === 'dev4' && p?.toString() === 'k'.repeat(20)) });
    const server: TlsServer = createTlsServer({ cert: tls.cert, key: tls.key }, (s) => broker.handle(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { ch } = channel({ url: `mqtts://localhost:${(server.address() as AddressInfo).port}`, key: 'k'.repeat(20), auth: 'key', deviceId: 'dev4', ca: tls.ca });
    await ch.start();
    await once(ch, 'connected');
    await ch.stop();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
