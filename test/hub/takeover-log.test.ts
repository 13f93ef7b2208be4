import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TakeoverWatch } from '../../hub/takeover-watch.js';
import { captureLogger, connectDevice, startTestHub, until, type TestHub } from './helpers.js';

/**
 * A new MQTT connection for a device that is connected takes over (the broker keeps the newest):
 * the hub says so, naming the device and both peers, and when it keeps happening says plainly that
 * two agents seem to share the device id; real WebSocket connections on 127.0.0.1.
 */
const ID = 'dev-shared';
let t: TestHub;
let key: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  t = await startTestHub();
  key = t.addDevice(ID);
});
afterAll(async () => {
  for (const c of clients) await c.endAsync(true);
  await t.stop();
});

type Line = Record<string, unknown>;
const TAKEN = 'another connection for the device took over';
const SHARED = 'two agents seem to share this device id';
const lines = (msg: string): Line[] => t.logs.lines().filter((l) => l.msg === msg && l.device === ID);

/** Connects one more client for the device; resolves once the previous one (if any) was closed. */
async function connectAnother(): Promise<{ address: string }> {
  const before = lines('device connected').length;
  const previous = clients[clients.length - 1];
  const client = await connectDevice(t, ID, key);
  clients.push(client);
  if (previous) await until(() => previous.disconnected || !previous.connected, 3000, 'the previous connection closed');
  await until(() => lines('device connected').length > before, 3000, 'device connected');
  return { address: String(lines('device connected')[before]!.address) };
}

describe('a device connection taken over by another', () => {
  it('names both peers; several in a minute are said to be two agents, once', async () => {
    const first = await connectAnother();
    expect(first.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(lines(TAKEN)).toHaveLength(0);

    const second = await connectAnother();
    await until(() => lines(TAKEN).length === 1, 3000, 'the takeover line');
    expect(lines(TAKEN)[0]).toMatchObject({ level: 40, previous: first.address, address: second.address });
    expect(lines('device disconnected')[0]).toMatchObject({ address: first.address, why: 'taken over by a new connection' });
    expect(lines(SHARED)).toHaveLength(0);

    await connectAnother();
    const fourth = await connectAnother();
    await until(() => lines(SHARED).length === 1, 3000, 'the shared-id line');
    expect(lines(SHARED)[0]).toMatchObject({ level: 40, takeovers: 3 });
    expect(String(lines(SHARED)[0]!.peers)).toContain(fourth.address);

    // Still going on: the single takeovers drop to debug, and the plain line is not repeated.
    await connectAnother();
    await until(() => lines(TAKEN).length === 4, 3000, 'the fourth takeover line');
    expect(lines(TAKEN).map((l) => l.level)).toEqual([40, 40, 40, 20]);
    expect(lines(SHARED)).toHaveLength(1);
  });
});

describe('the two-agents line over time', () => {
  it('is said again after ten minutes, with the takeovers told at debug meanwhile', () => {
    const logs = captureLogger();
    let now = 0;
    const w = new TakeoverWatch({ log: logs.log, now: () => now });
    const shared = (): Line[] => logs.lines().filter((l) => l.msg === SHARED);
    const takeover = (): void => {
      w.takenOver('d1', '10.0.0.1:1000', '10.0.0.2:2000');
      now += 1000;
    };
    for (let i = 0; i < 3; i++) takeover();
    w.takenOver('d2', '10.0.0.3:1000', '10.0.0.4:2000'); // another device counts on its own
    expect(shared()).toHaveLength(1);
    expect(shared()[0]).toMatchObject({ device: 'd1', takeovers: 3, peers: '10.0.0.1:1000 10.0.0.2:2000' });
    for (let i = 0; i < 599; i++) takeover();
    expect(shared()).toHaveLength(1);
    takeover(); // ten minutes after the first line
    expect(shared()).toHaveLength(2);
    expect(shared()[1]).toMatchObject({ device: 'd1', takeovers: 60, sinceLastSaid: 600 });
    // Two takeovers far apart are not two agents.
    now += 3_600_000;
    takeover();
    now += 120_000;
    takeover();
    expect(shared()).toHaveLength(2);
    expect(logs.lines().filter((l) => l.msg === TAKEN && l.level === 40)).toHaveLength(7); // 3 + d2 + the one at ten minutes + 2
  });
});
