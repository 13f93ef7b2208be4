import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoTarget, type Target } from '../helpers/targets.js';
import { DaemonStack, echoRoundTrip } from './harness.js';
import { TcpProxy } from './tcp-proxy.js';

// Real hub and agent processes per test: generous bounds for a loaded CI machine.
describe('the control channel reconnects with backoff; open streams do not depend on it', { timeout: 120000 }, () => {
  const stack = new DaemonStack();
  let proxy: TcpProxy;
  let target: Target;

  beforeAll(async () => {
    target = await echoTarget();
    await stack.setup({ allow: [`svc=${target.port}`], agent: (c) => (c.hub.reconnect = { initialDelayMs: 100, maxDelayMs: 800 }) });
    await stack.startHub();
    proxy = await new TcpProxy(stack.port).start();
    // Only the control channel goes through the proxy: the relay URL the hub hands out names its own port.
    stack.editAgentYaml((c) => (c.hub.url = `wss://localhost:${proxy.port}/mqtt`));
    await stack.startAgent();
    await stack.waitForDevice(true);
  });
  afterAll(async () => {
    await stack.stop();
    await proxy?.stop();
    await target?.close();
  });

  it('cut: every open stream keeps delivering bytes; reconnect attempts back off (full jitter, capped); new streams work once it is back', async () => {
    const client = stack.client();
    const streams = await Promise.all([1, 2, 3].map(() => client.openStream(stack.deviceId, 'svc')));
    for (const s of streams) await echoRoundTrip(s);
    expect(proxy.open).toBe(1); // the MQTT connection only

    proxy.cut();
    await stack.agent.waitForLog('control channel disconnected');
    await stack.waitForDevice(false);
    // While the control channel is down: open streams carry bytes both ways, new ones are refused.
    for (const s of streams) await echoRoundTrip(s, 256 * 1024);
    await expect(client.openStream(stack.deviceId, 'svc')).rejects.toMatchObject({ code: 'DEVICE_OFFLINE' });
    // Let it retry a few times against the refusing proxy: attempts count up, ceilings double to the cap.
    const attempts = await (async () => {
      for (;;) {
        const seen = stack.agent.logs('control channel reconnecting');
        if (seen.length >= 6) return seen;
        await stack.agent.waitForLine((l) => l.includes('"control channel reconnecting"') && stack.agent.logs('control channel reconnecting').length > seen.length, 10_000);
      }
    })();
    const ceilings = attempts.map((a) => a.ceilingMs as number);
    expect(ceilings.slice(0, 5)).toEqual([100, 200, 400, 800, 800]);
    for (const a of attempts) {
      expect(a.delayMs as number).toBeGreaterThanOrEqual(0);
      expect(a.delayMs as number).toBeLessThan(a.ceilingMs as number);
    }
    expect(attempts.map((a) => a.attempt)).toEqual(attempts.map((_a, i) => i + 1));

    proxy.restore();
    await stack.waitForDevice(true);
    const fresh = await client.openStream(stack.deviceId, 'svc');
    await echoRoundTrip(fresh);
    for (const s of streams) await echoRoundTrip(s); // the old ones too
    for (const s of [...streams, fresh]) {
      s.end();
      await once(s, 'close');
    }
    client.close();
  });
});
