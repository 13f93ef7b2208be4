import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DevstreamsClient, Forwarder } from '../../service/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub, errorBody, type ApiAnswer } from './fake-hub.js';
import { captureLogger } from './log-capture.js';

let tls: TestTls;
let hub: FakeHub;
let client: DevstreamsClient;
let forwarder: Forwarder | undefined;

beforeAll(() => {
  tls = makeTestTls();
});

afterEach(async () => {
  await forwarder?.stop();
  forwarder = undefined;
  client?.close();
  await hub?.stop();
});

async function setup(logger = captureLogger()): Promise<{ port: number; lines: Record<string, unknown>[] }> {
  hub = await new FakeHub(tls).start();
  client = new DevstreamsClient({ hub: hub.url, token: 'service-token-0123456789', ca: tls.ca });
  forwarder = new Forwarder({ client, device: 'pi-kitchen', service: 'echo', port: 0, logger: logger.log });
  await forwarder.start();
  expect(forwarder.address.host).toBe('127.0.0.1');
  return { port: forwarder.address.port, lines: logger.lines };
}

function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the socket reads until EOF. */
function readAll(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

describe('Forwarder', () => {
  it('bridges concurrent connections, each over its own stream', async () => {
    const { port } = await setup();
    // The hub answers only once both streams are being asked for: both are open at once.
    const pending: (() => void)[] = [];
    hub.api = (call, h) =>
      new Promise<ApiAnswer>((resolve) => {
        pending.push(() => resolve(h.defaultApi(call)));
        if (pending.length === 2) for (const go of pending) go();
      });
    const [a, b] = await Promise.all([dial(port), dial(port)]);
    const da = randomBytes(200_000);
    const db = randomBytes(150_000);
    const [ra, rb] = [readAll(a), readAll(b)];
    a.end(da);
    b.end(db);
    expect((await ra).equals(da)).toBe(true);
    expect((await rb).equals(db)).toBe(true);
    expect(hub.calls.map((c) => c.path)).toEqual([
      '/api/v1/devices/pi-kitchen/streams/connect?service=echo',
      '/api/v1/devices/pi-kitchen/streams/connect?service=echo',
    ]);
  });

  it('reports the client connections open as they change (what `devstreams forward` idles on)', async () => {
    hub = await new FakeHub(tls).start();
    client = new DevstreamsClient({ hub: hub.url, token: 'service-token-0123456789', ca: tls.ca });
    const counts: number[] = [];
    forwarder = new Forwarder({ client, device: 'pi-kitchen', service: 'echo', port: 0, onConnections: (n) => counts.push(n) });
    await forwarder.start();
    const a = await dial(forwarder.address.port);
    const b = await dial(forwarder.address.port);
    await vi.waitFor(() => expect(forwarder!.connections).toBe(2));
    const [ra, rb] = [readAll(a), readAll(b)];
    a.end('a');
    b.end('b');
    expect((await ra).toString()).toBe('a');
    expect((await rb).toString()).toBe('b');
    await vi.waitFor(() => expect(counts.at(-1)).toBe(0));
    expect(counts).toEqual([1, 2, 1, 0]);
    expect(forwarder.connections).toBe(0);
  });

  it('resets a connection whose stream is refused and logs one warn line', async () => {
    const { port, lines } = await setup();
    hub.api = () => errorBody('SERVICE_DENIED', 403, 'service "echo" is not allowed');
    const s = await dial(port);
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNRESET');
    const warns = lines.filter((l) => l.level === 40);
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({
      code: 'SERVICE_DENIED',
      status: 403,
      reason: 'service "echo" is not allowed',
      msg: 'pi-kitchen/echo refused: 403 SERVICE_DENIED: service "echo" is not allowed',
    });
  });

  it('ends open connections and stops listening on stop()', async () => {
    const { port } = await setup();
    let relayed!: () => void;
    const relayedP = new Promise<void>((r) => (relayed = r));
    hub.relay = () => relayed(); // the stream is open and stays open: nothing answers on it
    const s = await dial(port);
    const closed = new Promise((resolve) => s.once('close', resolve));
    s.on('error', () => undefined);
    s.write('hello');
    await relayedP;
    await forwarder!.stop();
    await forwarder!.stop(); // idempotent
    await closed;
    await expect(dial(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('aborts nothing once the stream is open: a client that leaves after that ends it through the bridge', async () => {
    const { port } = await setup();
    const signals: AbortSignal[] = [];
    const open = client.openStream.bind(client);
    vi.spyOn(client, 'openStream').mockImplementation((device, service, opts) => {
      signals.push(opts!.signal!);
      return open(device, service, opts);
    });
    const a = await dial(port);
    const ra = readAll(a);
    a.end('ping');
    expect((await ra).toString()).toBe('ping');
    a.destroy();
    await vi.waitFor(() => expect(forwarder!.connections).toBe(0), { timeout: 5000 });
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
  });

  it('gives up on streams still being opened when stopped', async () => {
    const { port } = await setup();
    let asked!: () => void;
    const askedP = new Promise<void>((r) => (asked = r));
    hub.api = () => {
      asked();
      return new Promise(() => undefined);
    };
    const s = await dial(port);
    s.on('error', () => undefined);
    const closed = new Promise((resolve) => s.once('close', resolve));
    await askedP;
    await forwarder!.stop();
    await closed;
  });
});
