import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DevstreamsError, WsDuplex } from '../../protocol/index.js';
import { DevstreamsClient, HubRefusalError, HubRequestError } from '../../service/index.js';
import { dialRelay } from '../../service/relay.js';
import { unreachable } from '../../service/errors.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub, errorBody } from './fake-hub.js';

const TOKEN = 'service-token-0123456789abcdef';
let tls: TestTls;
let hub: FakeHub;
let client: DevstreamsClient;

beforeAll(async () => {
  tls = makeTestTls();
});

afterEach(async () => {
  client?.close();
  await hub?.stop();
});

async function setup(): Promise<void> {
  hub = await new FakeHub(tls).start();
  // The per-stream paths (open-and-connect, the two steps): the fake hub has no multiplexed
  // endpoint. The multiplexed path is tested against a real hub (test/service/multiplex.test.ts).
  client = new DevstreamsClient({ hub: hub.url, token: TOKEN, ca: tls.ca, multiplex: false });
}

/** Writes `data`, ends, and reads the stream to its end; resolves with what came back. */
async function roundTrip(stream: WsDuplex, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const closed = once(stream, 'close');
  stream.end(data);
  await once(stream, 'end');
  await closed;
  return Buffer.concat(chunks);
}

async function rejection(p: Promise<unknown>): Promise<DevstreamsError> {
  try {
    await p;
  } catch (err) {
    return err as DevstreamsError;
  }
  throw new Error('expected a rejection');
}

describe('DevstreamsClient.openStream', () => {
  it('opens the stream in one request over one connection, and carries bytes and EOF both ways', async () => {
    await setup();
    const stream = await client.openStream('pi-kitchen', 'echo', { timeoutMs: 5000 });
    expect(stream).toBeInstanceOf(WsDuplex);
    const data = randomBytes(300_000);
    const back = await roundTrip(stream, data);
    expect(back.equals(data)).toBe(true);
    expect(stream.errored).toBeNull();
    expect(hub.calls).toEqual([
      {
        method: 'GET',
        path: '/api/v1/devices/pi-kitchen/streams/connect?service=echo&timeoutMs=5000',
        authorization: `Bearer ${TOKEN}`,
        body: undefined,
      },
    ]);
    expect(hub.tlsConnections).toBe(1);
  });

  it('from its second stream on keeps one connection waiting for the next, and closes it with the client', async () => {
    await setup();
    for (const [i, connections] of [[1, 1], [2, 3], [3, 4]] as const) {
      const stream = await client.openStream('pi-kitchen', 'echo');
      expect((await roundTrip(stream, Buffer.from(`stream ${i}`))).toString()).toBe(`stream ${i}`);
      // 1: its own; 2: its own and a spare; 3: took the spare, and a new spare
      await vi.waitFor(() => expect(hub.tlsConnections).toBe(connections));
    }
    client.close();
    await vi.waitFor(() => expect(hub.tlsClosed).toBe(hub.tlsConnections));
  });

  it('opens again, once, on a new connection when the hub resets the spare connection just as it is taken', async () => {
    await setup();
    hub.resetUpgrade = (n) => n === 3; // stream 3's request, on the spare stream 2 left
    for (const i of [1, 2, 3]) {
      const stream = await client.openStream('pi-kitchen', 'echo');
      expect((await roundTrip(stream, Buffer.from(`stream ${i}`))).toString()).toBe(`stream ${i}`);
    }
    expect(hub.upgrades).toBe(4);
  });

  it('does not open again when the reset comes on a connection of its own', async () => {
    await setup();
    hub.resetUpgrade = (n) => n === 1;
    const err = await rejection(client.openStream('pi-kitchen', 'echo'));
    expect(err).toBeInstanceOf(HubRequestError);
    expect(err.message).toMatch(/^cannot reach hub https:\/\/127\.0\.0\.1:\d+: .*ECONNRESET/);
    expect(hub.upgrades).toBe(1);
  });

  it('falls back to the REST call and the relay dial on a hub without open-and-connect (404 NOT_FOUND)', async () => {
    await setup();
    hub.connectRoute = false;
    const stream = await client.openStream('pi-kitchen', 'echo', { timeoutMs: 5000 });
    expect((await roundTrip(stream, Buffer.from('in two steps'))).toString()).toBe('in two steps');
    expect(hub.calls.map((c) => `${c.method} ${c.path} ${JSON.stringify(c.body)}`)).toEqual([
      'GET /api/v1/devices/pi-kitchen/streams/connect?service=echo&timeoutMs=5000 undefined',
      'POST /api/v1/devices/pi-kitchen/streams {"service":"echo","timeoutMs":5000}',
    ]);
  });

  it('does not fall back when the device is what is not found (404 DEVICE_UNKNOWN)', async () => {
    await setup();
    hub.api = () => errorBody('DEVICE_UNKNOWN', 404, 'no such device');
    expect(await rejection(client.openStream('pi-x', 'ssh'))).toMatchObject({ code: 'DEVICE_UNKNOWN', status: 404 });
    expect(hub.calls.map((c) => c.method)).toEqual(['GET']);
  });

  it('keeps the base path of the hub URL and encodes the device id', async () => {
    await setup();
    const prefixed = new DevstreamsClient({ hub: `${hub.url}/`, token: TOKEN, ca: tls.ca, multiplex: false });
    hub.api = () => errorBody('DEVICE_UNKNOWN', 404, 'no such device');
    await rejection(prefixed.openStream('a b', 'ssh'));
    hub.connectRoute = false;
    await rejection(prefixed.openStream('a b', 'ssh'));
    prefixed.close();
    expect(hub.calls[0]!.path).toBe('/api/v1/devices/a%20b/streams/connect?service=ssh');
    expect(hub.calls[2]!.path).toBe('/api/v1/devices/a%20b/streams');
    expect(hub.calls[2]!.body).toEqual({ service: 'ssh' });
  });

  it.each([
    ['DEVICE_UNKNOWN', 404, 'device pi-x is not registered'],
    ['DEVICE_OFFLINE', 503, 'device pi-x is offline'],
    ['SERVICE_DENIED', 403, 'service "telnet" is not in the allowlist'],
    ['DEVICE_TIMEOUT', 504, 'no answer from the device within 5000 ms'],
    ['UNAUTHORIZED', 401, 'unknown service token'],
  ] as const)('maps a hub refusal %s (%i) to a HubRefusalError', async (code, status, reason) => {
    await setup();
    hub.api = () => errorBody(code, status, reason);
    const err = await rejection(client.openStream('pi-x', 'telnet'));
    expect(err).toBeInstanceOf(HubRefusalError);
    expect(err).toBeInstanceOf(DevstreamsError);
    expect(err.code).toBe(code);
    expect(err.status).toBe(status);
    expect(err.reason).toBe(reason);
  });

  it('maps a refused relay upgrade (409 TOKEN_USED) to its code', async () => {
    await setup();
    const answer = hub.newStream('pi-kitchen', 'echo');
    const first = await dialRelay({ url: answer.url, token: answer.token, ca: tls.ca, timeoutMs: 5000 });
    const err = await rejection(dialRelay({ url: answer.url, token: answer.token, ca: tls.ca, timeoutMs: 5000 }));
    expect(err).toBeInstanceOf(HubRefusalError);
    expect(err.code).toBe('TOKEN_USED');
    expect(err.status).toBe(409);
    first.destroy();
  });

  it.each([true, false])('maps a relay refusal during openStream (410 STREAM_EXPIRED; open-and-connect: %s)', async (connectRoute) => {
    await setup();
    hub.connectRoute = connectRoute;
    hub.relayRefusal = errorBody('STREAM_EXPIRED', 410, 'stream expired');
    const err = await rejection(client.openStream('pi-kitchen', 'echo'));
    expect(err.code).toBe('STREAM_EXPIRED');
    expect(err.status).toBe(410);
  });

  it('gives a clear error for garbage answers', async () => {
    await setup();
    hub.api = () => ({ status: 502, body: '<html>Bad Gateway</html>', contentType: 'text/html' });
    let err = await rejection(client.openStream('pi', 'ssh'));
    expect(err).toBeInstanceOf(HubRefusalError);
    expect(err).toMatchObject({ code: 'INTERNAL', status: 502 });
    expect(err.message).toMatch(/^GET \/api\/v1\/devices\/pi\/streams\/connect: hub answered HTTP 502 without a devstreams error body \(text\/html: "<html>Bad Gateway<\/html>"\)/);

    // The two-step open's answers (a hub without open-and-connect).
    hub.connectRoute = false;
    hub.api = () => ({ status: 201, body: '<html>hello</html>', contentType: 'text/html' });
    err = await rejection(client.openStream('pi', 'ssh'));
    expect(err).toBeInstanceOf(HubRequestError);
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/POST \/api\/v1\/devices\/pi\/streams: hub answered HTTP 201 with an invalid body: not JSON \(text\/html/);

    hub.api = () => ({ status: 201, body: { streamId: 'x', device: 'pi', service: 'ssh', token: 't', expiresAt: 1 } });
    err = await rejection(client.openStream('pi', 'ssh'));
    expect(err.message).toMatch(/invalid body: url: /);

    hub.api = () => ({ status: 502, body: '<html>Bad Gateway</html>', contentType: 'text/html' });
    err = await rejection(client.openStream('pi', 'ssh'));
    expect(err).toBeInstanceOf(HubRefusalError);
    expect(err.code).toBe('INTERNAL');
    expect(err.status).toBe(502);
    expect(err.message).toMatch(/hub answered HTTP 502 without a devstreams error body \(text\/html: "<html>Bad Gateway<\/html>"\)/);

    hub.api = () => ({ status: 403, body: { error: { code: 'NO_SUCH_CODE', status: 403, reason: 'x' } } });
    err = await rejection(client.openStream('pi', 'ssh'));
    expect(err.code).toBe('SERVICE_DENIED');
    expect(err.message).toMatch(/without a devstreams error body/);

    hub.api = (call, h) => ({ status: 201, body: { ...h.newStream('pi', 'ssh'), url: 'ws://127.0.0.1:1/x' } });
    err = await rejection(client.openStream('pi', 'ssh'));
    expect(err.message).toMatch(/relay URL with scheme ws: \(wss: expected\)/);
  });

  it('refuses a hub that speaks another protocol version', async () => {
    await setup();
    hub.api = () => ({ status: 200, body: { devices: [] }, headers: { 'x-devstreams-protocol': '2' } });
    const err = await rejection(client.listDevices());
    expect(err.code).toBe('VERSION_MISMATCH');
  });

  it('fails TLS verification against the wrong CA', async () => {
    await setup();
    const other = makeTestTls();
    const wrong = new DevstreamsClient({ hub: hub.url, token: TOKEN, ca: other.ca });
    const err = await rejection(wrong.openStream('pi', 'ssh'));
    wrong.close();
    expect(err).toBeInstanceOf(HubRequestError);
    expect(err.message).toMatch(/^cannot reach hub https:\/\/127\.0\.0\.1:\d+: .*(certificate|UNABLE_TO_VERIFY)/i);
    // The SDK's user has the `ca` option, not the CLI's flag and variable.
    expect(err.message).toMatch(/ \(is the client's `ca` option the hub's CA\?\)$/);
    expect(err.message).not.toContain('DEVSTREAMS_CA');
    expect(err.message).not.toContain('--use-system-ca');
    expect(hub.calls).toHaveLength(0);
  });

  it("names the program's own CA setting when given one (caSource), on the API and the relay paths", async () => {
    await setup();
    const other = makeTestTls();
    for (const multiplex of [true, false]) {
      const wrong = new DevstreamsClient({ hub: hub.url, token: TOKEN, ca: other.ca, caSource: '--ca / DEVSTREAMS_CA', multiplex });
      const errs = [await rejection(wrong.openStream('pi', 'ssh')), await rejection(wrong.listDevices())];
      wrong.close();
      for (const err of errs) expect(err.message).toMatch(/ \(is --ca \/ DEVSTREAMS_CA the hub's CA\?\)$/);
    }
  });

  it("leaves out Node 24's advice about its own flags, which the executable's users cannot follow", () => {
    const node24 = Object.assign(new Error('unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca'), {
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    expect(unreachable('https://hub:443', node24, '--ca / DEVSTREAMS_CA').message).toBe(
      "cannot reach hub https://hub:443: UNABLE_TO_VERIFY_LEAF_SIGNATURE unable to verify the first certificate (is --ca / DEVSTREAMS_CA the hub's CA?)",
    );
  });

  it('names the hub and the cause when it cannot be reached', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    hub = await new FakeHub(tls).start();
    client = new DevstreamsClient({ hub: `https://127.0.0.1:${port}`, token: TOKEN, ca: tls.ca });
    const err = await rejection(client.listStreams());
    expect(err).toBeInstanceOf(HubRequestError);
    expect(err.message).toBe(`cannot reach hub https://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it('gives up when its signal fires while the hub waits for the device', async () => {
    await setup();
    let answered!: () => void;
    const asked = new Promise<void>((r) => (answered = r));
    hub.api = () => {
      answered();
      return new Promise(() => undefined);
    };
    const ac = new AbortController();
    const p = client.openStream('pi', 'ssh', { signal: ac.signal });
    await asked;
    ac.abort();
    const err = await rejection(p);
    expect((err as Error).name).toBe('AbortError');
  });

  it('never puts the token in an error', async () => {
    await setup();
    hub.api = () => ({ status: 500, body: 'oops' });
    const err = await rejection(client.openStream('pi', 'ssh'));
    expect(JSON.stringify({ m: err.message, s: err.stack })).not.toContain(TOKEN);
  });

  it('refuses a non-https hub URL at construction', () => {
    expect(() => new DevstreamsClient({ hub: 'http://127.0.0.1:1', token: TOKEN })).toThrow(/https/);
  });
});

describe('DevstreamsClient queries', () => {
  it('lists devices and streams, validated', async () => {
    await setup();
    const device = { id: 'pi-1', online: true, lastSeen: 1000, agentVersion: '0.1.0', openStreams: 2 };
    const record = {
      streamId: 'AAAAAAAAAAAAAAAAAAAAAA', device: 'pi-1', service: 'ssh', result: 'ok', status: 200, code: 'OK',
      reason: '', closedBy: 'service', openedAt: 1, closedAt: 2, durationMs: 1, bytesToDevice: 3, bytesFromDevice: 4,
    };
    hub.api = (call) => ({ status: 200, body: call.path.endsWith('devices') ? { devices: [device] } : { streams: [record] } });
    expect(await client.listDevices()).toEqual([device]);
    expect(await client.listStreams()).toEqual([record]);
    expect(hub.calls.map((c) => `${c.method} ${c.path} ${c.authorization}`)).toEqual([
      `GET /api/v1/devices Bearer ${TOKEN}`,
      `GET /api/v1/streams Bearer ${TOKEN}`,
    ]);

    hub.api = () => ({ status: 200, body: { devices: [{ id: 'x' }] } });
    const err = await rejection(client.listDevices());
    expect(err.message).toMatch(/GET \/api\/v1\/devices: hub answered HTTP 200 with an invalid body: devices\.0\.online/);
  });

  it('maps 401 on a query', async () => {
    await setup();
    hub.api = () => errorBody('UNAUTHORIZED', 401, 'unknown service token');
    const err = await rejection(client.listStreams());
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.status).toBe(401);
  });
});
