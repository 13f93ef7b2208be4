import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlChannel } from '../../agent/control-channel.js';
import { ShortSessions } from '../../agent/short-sessions.js';
import { startTestHub, until, type TestHub } from '../hub/helpers.js';
import { captureLog, testChannel } from './helpers.js';

/**
 * Two agents with the same device id (the same config on two boards): the hub keeps the newest
 * connection, so they take it from each other at every reconnect. The agent cannot be told (MQTT
 * 3.1.1 has no DISCONNECT from the server); it sees its channel closed by the hub soon after each
 * connect, and says what that may mean, once. Against a real hub on 127.0.0.1.
 */
let t: TestHub;
const running: ControlChannel[] = [];
const HINT = 'control channel keeps being closed by the hub soon after connecting';

beforeAll(async () => {
  t = await startTestHub();
});
afterAll(async () => {
  for (const ch of running) await ch.stop();
  await t?.stop();
});

function agent(deviceId: string, key: string) {
  return testChannel(running, { url: `wss://localhost:${t.port}/mqtt`, deviceId, key, ca: t.ca, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
}

describe('two agents with one device id', () => {
  it('each agent hints at a second agent once; the hub names the takeovers and says it plainly', async () => {
    const key = t.addDevice('dev-twin');
    const a = agent('dev-twin', key);
    const b = agent('dev-twin', key);
    await a.ch.start();
    await once(a.ch, 'connected');
    await b.ch.start();

    const hints = await Promise.all([a, b].map((x) => x.logs.waitFor((l) => l.msg === HINT)));
    for (const h of hints) {
      expect(h.level).toBe(40);
      expect(h.closes).toBeGreaterThanOrEqual(3);
      expect(String(h.hint)).toContain('another agent may be using device id dev-twin');
    }
    // Rate-limited: still flapping, but each agent says it once.
    const disconnects = (x: typeof a): number => x.logs.lines.filter((l) => l.msg === 'control channel disconnected').length;
    const seen = disconnects(a);
    await until(() => disconnects(a) >= seen + 3, 20_000, 'more takeovers');
    for (const x of [a, b]) expect(x.logs.lines.filter((l) => l.msg === HINT)).toHaveLength(1);

    await until(() => t.logs.lines().some((l) => l.msg === 'two agents seem to share this device id'), 10_000, 'the hub line');
    const hub = t.logs.lines().find((l) => l.msg === 'two agents seem to share this device id')!;
    expect(hub).toMatchObject({ level: 40, device: 'dev-twin' });
  });
});

describe('what counts as closed by the hub soon after connecting', () => {
  function watch() {
    const logs = captureLog();
    let now = 0;
    const w = new ShortSessions({ log: logs.log, deviceId: 'd1', now: () => now });
    const session = (ms: number, end: (w: ShortSessions) => void = (x) => x.ended(false)): void => {
      w.connected();
      now += ms;
      end(w);
      now += 100;
    };
    const hints = (): number => logs.lines.filter((l) => l.msg === HINT).length;
    return { w, session, hints, advance: (ms: number) => (now += ms) };
  }

  it('three short sessions within a minute: one hint, then none for ten minutes', () => {
    const x = watch();
    x.session(500);
    x.session(500);
    expect(x.hints()).toBe(0);
    x.session(500);
    expect(x.hints()).toBe(1);
    for (let i = 0; i < 20; i++) x.session(500);
    expect(x.hints()).toBe(1);
    x.advance(600_000);
    for (let i = 0; i < 3; i++) x.session(500);
    expect(x.hints()).toBe(2);
  });

  it('not sessions the agent ended, nor ones with a local error, nor long ones, nor ones far apart', () => {
    const x = watch();
    for (let i = 0; i < 5; i++) x.session(500, (w) => w.ended(true)); // the agent stopping
    for (let i = 0; i < 5; i++) x.session(500, (w) => (w.localError(), w.ended(false))); // e.g. keep-alive timeout
    for (let i = 0; i < 5; i++) x.session(30_000); // up for a while first
    for (let i = 0; i < 5; i++) {
      x.session(500);
      x.advance(40_000); // a hub restart now and then
    }
    expect(x.hints()).toBe(0);
  });
});
