import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { apiPaths, WS_SUBPROTOCOL, type DevstreamsError } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { describeEachBroker } from '../helpers/brokers.js';
import { runCli } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { closedPort, holdTarget, type Target } from '../helpers/targets.js';
import { refusalOf } from '../helpers/streams.js';

/** Every way a stream can be refused, seen as a user sees it: `devstreams connect` and the SDK. */
describeEachBroker('refusals', (b) => {
  const stack = new Stack(b.stackOptions());
  let hold: Target;
  let secret: Target;
  let client: DevstreamsClient;

  beforeAll(async () => {
    hold = await holdTarget();
    secret = await holdTarget(); // listening on the device, but not in the allowlist
    const closed = await closedPort();
    await stack.start([
      { id: 'pi-refuse', allow: [`web=${hold.port}`, `dead=${closed}`, 'echo'], limits: { maxStreams: 2 } },
      { id: 'pi-offline', allow: ['echo'], start: false },
    ]);
    client = new DevstreamsClient({ hub: stack.hubUrl, token: stack.token, ca: readFileSync(stack.caFile) });
  });
  afterAll(async () => {
    client?.close();
    await stack.stop();
    await hold?.close();
    await secret?.close();
  });

  const connect = (device: string, service: string, env = stack.env, extra: string[] = []) =>
    runCli(['connect', device, service, ...extra], { env });

  it('unknown device: 404 DEVICE_UNKNOWN, one line on stderr, non-zero exit', async () => {
    const r = await connect('no-such-device', 'echo');
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/404 DEVICE_UNKNOWN/);
    expect((await refusalOf(client.openStream('no-such-device', 'echo'))).code).toBe('DEVICE_UNKNOWN');
  });

  it('offline device: 503 DEVICE_OFFLINE at once', async () => {
    const r = await connect('pi-offline', 'echo');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/503 DEVICE_OFFLINE/);
  });

  it('service not in the allowlist: 403 SERVICE_DENIED, and the target is never dialled', async () => {
    const before = secret.connections;
    for (const spec of ['ssh', String(secret.port), `127.0.0.1:${secret.port}`]) {
      const r = await connect('pi-refuse', spec);
      expect(r.code, spec).not.toBe(0);
      expect(r.stderr, spec).toMatch(/403 SERVICE_DENIED: /);
    }
    expect(secret.connections).toBe(before);
  });

  it('a malformed service spec: 400 BAD_REQUEST', async () => {
    const e = await refusalOf(client.openStream('pi-refuse', 'Not A Service!'));
    expect(e.code).toBe('BAD_REQUEST');
  });

  it('target port closed: 503 TARGET_UNREACHABLE with the reason', async () => {
    const r = await connect('pi-refuse', 'dead');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/503 TARGET_UNREACHABLE: .*ECONNREFUSED/);
  });

  it('over maxStreams: 429 LIMIT_EXCEEDED, and streams work again once one closes', async () => {
    const a = await client.openStream('pi-refuse', 'web');
    const b = await client.openStream('pi-refuse', 'web');
    const e = await refusalOf(client.openStream('pi-refuse', 'web'));
    expect(e.code).toBe('LIMIT_EXCEEDED');
    expect(e.status).toBe(429);
    const closed = new Promise((r) => a.once('close', r));
    a.destroy();
    await closed;
    // The agent frees the slot when its side of the stream has closed; retry briefly (bounded).
    let c;
    for (let i = 0; i < 50 && !c; i++) {
      c = await client.openStream('pi-refuse', 'web').catch((err: DevstreamsError) => {
        if (err.code !== 'LIMIT_EXCEEDED') throw err;
        return new Promise<undefined>((r) => setTimeout(() => r(undefined), 100));
      });
    }
    expect(c).toBeDefined();
    b.destroy();
    c!.destroy();
    // Every slot is given back: the device reports no open streams.
    await stack.waitForDeviceInfo('pi-refuse', (d) => d.openStreams === 0, 'idle');
  });

  it('device does not answer before the deadline: 504 DEVICE_TIMEOUT', async () => {
    const agent = stack.agents.get('pi-refuse')!;
    agent.child.kill('SIGSTOP'); // still connected as far as the broker knows, but silent
    try {
      const r = await connect('pi-refuse', 'echo', stack.env, ['--timeout', '1500']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/504 DEVICE_TIMEOUT/);
    } finally {
      agent.child.kill('SIGCONT');
    }
  });

  it('a stream whose service side never comes is dropped at its deadline and recorded unpaired', async () => {
    // The late answer to the 504 test's request must not hold a slot either.
    await stack.waitForDeviceInfo('pi-refuse', (d) => d.openStreams === 0, 'idle');
    const res = await fetchJson('POST', apiPaths.openStream('pi-refuse'), { service: 'echo', timeoutMs: 1500 });
    expect(res.status).toBe(201);
    const rec = await stack.hub.waitForLog('stream ended', { streamId: res.body.streamId });
    expect(rec.result).toBe('unpaired');
  });

  it('wrong service token: 401 UNAUTHORIZED', async () => {
    const r = await connect('pi-refuse', 'echo', { ...stack.env, DEVSTREAMS_TOKEN: 'x'.repeat(43) });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/401 UNAUTHORIZED/);
  });

  it('a stream token used twice: the second use is refused with 409 TOKEN_USED', async () => {
    const res = await fetchJson('POST', apiPaths.openStream('pi-refuse'), { service: 'echo' });
    expect(res.status).toBe(201);
    const first = await dialRelay(res.body.url, res.body.token);
    expect(first.status).toBe(101);
    const second = await dialRelay(res.body.url, res.body.token);
    expect(second.status).toBe(409);
    expect(second.body).toMatch(/TOKEN_USED/);
    first.ws?.terminate();
  });

  async function fetchJson(method: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
    const https = await import('node:https');
    return new Promise((resolve, reject) => {
      const req = https.request(
        `${stack.hubUrl}${path}`,
        {
          method,
          ca: readFileSync(stack.caFile),
          headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
        },
        (res) => {
          let s = '';
          res.on('data', (d) => (s += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(s) }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  }

  function dialRelay(url: string, token: string): Promise<{ status: number; body: string; ws?: WebSocket }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, WS_SUBPROTOCOL, { headers: { authorization: `Bearer ${token}` }, ca: readFileSync(stack.caFile) });
      ws.on('open', () => resolve({ status: 101, body: '', ws }));
      ws.on('unexpected-response', (_req, res) => {
        let s = '';
        res.on('data', (d) => (s += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: s }));
      });
      ws.on('error', (e) => reject(e));
    });
  }
});
