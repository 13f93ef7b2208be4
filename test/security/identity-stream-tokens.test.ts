import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiPaths, type StreamRequest } from '../../protocol/index.js';
import { api, closed, connectDevice, dialRelay, fakeAgent, startTestHub, until, type TestHub } from '../hub/helpers.js';

/**
 * Attacks on stream tokens at the relay: replaying a used token, presenting a token at another
 * stream's URL, swapping roles (the service presenting the device's token and vice versa), and
 * a token after its handshake deadline. Every refusal happens before the WebSocket upgrade.
 */

let t: TestHub;
let device: MqttClient;
let requests: StreamRequest[];

beforeAll(async () => {
  t = await startTestHub();
  device = await connectDevice(t, 'dev', t.addDevice('dev'));
  requests = await fakeAgent(device, 'dev', () => ({ status: 200, code: 'OK', reason: 'ok' }));
  await until(() => t.hub.presence.isOnline('dev'), 5000, 'device online');
});
afterAll(async () => {
  await device?.endAsync(true);
  await t?.stop();
});

async function open(timeoutMs?: number): Promise<{ url: string; serviceToken: string; deviceToken: string; expiresAt: number }> {
  const r = await api(t, 'POST', apiPaths.openStream('dev'), { body: { service: 'echo', ...(timeoutMs ? { timeoutMs } : {}) } });
  expect(r.status).toBe(201);
  const req = requests.find((x) => x.streamId === r.body.streamId)!;
  return { url: r.body.url, serviceToken: r.body.token, deviceToken: req.token, expiresAt: r.body.expiresAt };
}

function refusal(r: Awaited<ReturnType<typeof dialRelay>>): { status: number; code: string } {
  if ('ws' in r) {
    r.ws.terminate();
    throw new Error('the relay accepted a connection it should have refused');
  }
  return { status: r.status, code: r.body.error.code };
}

describe('stream tokens', () => {
  it('replay: a used token is refused (409 TOKEN_USED), for both roles', async () => {
    const s = await open();
    const svc = await dialRelay(t, s.url, s.serviceToken);
    const dev = await dialRelay(t, s.url, s.deviceToken);
    expect(refusal(await dialRelay(t, s.url, s.serviceToken))).toEqual({ status: 409, code: 'TOKEN_USED' });
    expect(refusal(await dialRelay(t, s.url, s.deviceToken))).toEqual({ status: 409, code: 'TOKEN_USED' });
    for (const r of [svc, dev]) if ('ws' in r) r.ws.close();
  });

  it('cross-stream: a token presented at another stream is refused (401), and that stream still pairs', async () => {
    const a = await open();
    const b = await open();
    expect(refusal(await dialRelay(t, b.url, a.serviceToken))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    expect(refusal(await dialRelay(t, a.url, b.deviceToken))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    // The refused attempts consumed nothing: both legitimate sides of b still connect and pair.
    const svc = await dialRelay(t, b.url, b.serviceToken);
    const dev = await dialRelay(t, b.url, b.deviceToken);
    expect('ws' in svc && 'ws' in dev).toBe(true);
    if ('ws' in svc && 'ws' in dev) {
      const got = new Promise<Buffer>((resolve) => dev.ws.once('message', (d: Buffer) => resolve(d)));
      svc.ws.send(Buffer.from('ping'));
      expect((await got).toString()).toBe('ping');
      svc.ws.close();
      await closed(dev.ws);
    }
  });

  it("role swap: a side that holds its own token cannot take the peer's role", async () => {
    const s = await open();
    // The service connects, then tries again with the device's token it must never have had:
    // the device's seat is taken by the real device first, so the swap gets 409.
    const svc = await dialRelay(t, s.url, s.serviceToken);
    const dev = await dialRelay(t, s.url, s.deviceToken);
    expect(refusal(await dialRelay(t, s.url, s.deviceToken))).toEqual({ status: 409, code: 'TOKEN_USED' });
    // And the device presenting the service token it was never given (it reads it from nowhere; here
    // we hand it over to prove the relay would not let one socket hold both seats): 409 as well.
    expect(refusal(await dialRelay(t, s.url, s.serviceToken))).toEqual({ status: 409, code: 'TOKEN_USED' });
    // Tokens are not interchangeable across stream ids even when the roles "fit".
    const other = await open();
    expect(refusal(await dialRelay(t, other.url, s.deviceToken))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    expect(refusal(await dialRelay(t, s.url, other.deviceToken))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    for (const r of [svc, dev]) if ('ws' in r) r.ws.close();
  });

  it('expiry: a token after the handshake deadline is refused (410 STREAM_EXPIRED)', async () => {
    const s = await open(1000);
    // Nothing to wait on but the clock: the deadline is 1 s away (bounded).
    await until(() => Date.now() > s.expiresAt + 5, 5000, 'deadline passed');
    expect(refusal(await dialRelay(t, s.url, s.serviceToken))).toEqual({ status: 410, code: 'STREAM_EXPIRED' });
  });

  it('no token, a malformed token, or a random token: 401 before the upgrade', async () => {
    const s = await open();
    expect(refusal(await dialRelay(t, s.url, null))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    expect(refusal(await dialRelay(t, s.url, 'short'))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    expect(refusal(await dialRelay(t, s.url, 'A'.repeat(43)))).toEqual({ status: 401, code: 'UNAUTHORIZED' });
  });
});
