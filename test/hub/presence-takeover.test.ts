import { Duplex, PassThrough } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, topics } from '../../protocol/index.js';
import { startTestHub, until, type TestHub } from './helpers.js';

/**
 * A device that connects again while the hub still holds its previous connection (a half-open link
 * the device gave up on): the embedded broker takes the session over and closes the old client,
 * whose last will (retained "offline") is published. The hub must end with the device online: the
 * old connection's will and disconnect come before anything the new connection publishes, even
 * packets sent right behind its CONNECT. Driven over in-memory streams, so the order is the
 * broker's own, not the network's.
 */

const ID = 'dev-takeover';
let t: TestHub;
let key: string;

beforeAll(async () => {
  t = await startTestHub();
  key = t.addDevice(ID);
});
afterAll(async () => {
  await t.stop();
});

/** One MQTT connection handed straight to the broker; the device's side writes raw packets. */
function session(): { hubSide: Duplex; send(p: object): void; received: mqttPacket.Packet[]; onPacket(f: (p: mqttPacket.Packet) => void): void } {
  const toHub = new PassThrough();
  const toDevice = new PassThrough();
  const hubSide = Duplex.from({ readable: toHub, writable: toDevice });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const received: mqttPacket.Packet[] = [];
  const listeners: Array<(p: mqttPacket.Packet) => void> = [];
  parser.on('packet', (p) => {
    received.push(p);
    for (const l of listeners) l(p);
  });
  toDevice.on('data', (d: Buffer) => parser.parse(d));
  t.hub.broker.handle(hubSide);
  return {
    hubSide,
    send: (p) => toHub.write(Buffer.concat([p].flat().map((x) => mqttPacket.generate(x as mqttPacket.Packet, { protocolVersion: 4 })))),
    received,
    onPacket: (f) => listeners.push(f),
  };
}

const CONNECT = (): object => ({
  cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: ID, keepalive: 30, username: ID, password: Buffer.from(key),
  will: { topic: topics.status(ID), payload: Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, online: false })), qos: 1, retain: true },
});
const ONLINE = (messageId: number): object => ({
  cmd: 'publish', topic: topics.status(ID), qos: 1, retain: true, dup: false, messageId,
  payload: Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, online: true, openStreams: 0 })),
});
const has = (s: ReturnType<typeof session>, cmd: string, messageId?: number): boolean =>
  s.received.some((p) => p.cmd === cmd && (messageId === undefined || (p as { messageId?: number }).messageId === messageId));

describe('presence across a session takeover (same client id)', () => {
  for (const mode of ['status right behind the CONNECT', 'status on the CONNACK'] as const) {
    it(`the old connection's will does not outlive the new connection's status (${mode})`, async () => {
      const old = session();
      old.send(CONNECT());
      await until(() => has(old, 'connack'), 3000, 'old CONNACK');
      old.send(ONLINE(1));
      await until(() => has(old, 'puback', 1) && t.hub.presence.isOnline(ID), 3000, 'online on the old connection');

      // Every status the hub's subscribers see from here on, in order (true: online, false: offline).
      const statuses: boolean[] = [];
      const unsubscribe = await t.hub.bus.subscribe(topics.status(ID), (_topic, payload) => {
        statuses.push((JSON.parse(payload.toString()) as { online: boolean }).online);
      });
      try {
        const fresh = session();
        if (mode === 'status right behind the CONNECT') {
          fresh.send([CONNECT(), ONLINE(2)]);
        } else {
          fresh.onPacket((p) => p.cmd === 'connack' && fresh.send(ONLINE(2)));
          fresh.send(CONNECT());
        }
        // Both statuses delivered (the old one's will, the new one's online), the old connection gone.
        await until(() => statuses.length >= 2 && has(fresh, 'puback', 2) && old.hubSide.destroyed, 3000, 'takeover settled');
        expect(statuses).toEqual([false, true]);
        expect(fresh.hubSide.destroyed).toBe(false);
        expect(t.hub.broker.isConnected(ID)).toBe(true);
        expect(t.hub.presence.isOnline(ID)).toBe(true);

        // And the new connection's own end still takes the device offline.
        fresh.hubSide.destroy();
        await until(() => !t.hub.presence.isOnline(ID) && !t.hub.broker.isConnected(ID), 3000, 'offline after the new connection ends');
      } finally {
        await unsubscribe();
      }
    });
  }
});
