import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, WsDuplex, silentLogger } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/client.js';
import { runServiceCli } from '../../service/cli.js';
import { runConnect, standardInput } from '../../service/connect.js';
import type { ServiceContext } from '../../service/context.js';
import { runEcho } from '../../service/echo.js';
import { exposedWarning, runForward } from '../../service/forward-command.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub, errorBody } from './fake-hub.js';

const TOKEN = 'service-token-0123456789abcdef';
let tls: TestTls;
let hub: FakeHub;

beforeAll(() => {
  tls = makeTestTls();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await hub?.stop();
});

async function startHub(): Promise<FakeHub> {
  hub = await new FakeHub(tls).start();
  return hub;
}

/** A context whose output is kept in memory. */
function memoryContext(): ServiceContext & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    client: new DevstreamsClient({ hub: hub.url, token: TOKEN, ca: tls.ca }),
    log: silentLogger,
    out: (t) => void stdout.push(t),
    err: (l) => void stderr.push(l),
    stdout,
    stderr,
  };
}

/** Runs a command through runServiceCli with stdout and stderr captured. */
async function cli(command: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += chunk.toString()), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += chunk.toString()), true));
  try {
    const code = await runServiceCli(command, [...args, '--hub', hub.url, '--token', TOKEN, '--ca', tls.caFile]);
    return { code, out, err };
  } finally {
    vi.restoreAllMocks();
  }
}

/** A relay stand-in that passes what it reads through `transform` and back. */
function transformingRelay(transform: () => Transform) {
  return (ws: import('ws').WebSocket): void => {
    const d = new WsDuplex(ws);
    pipeline(d, transform(), d).catch(() => undefined);
  };
}

describe('devstreams echo', () => {
  it('prints the round trip', async () => {
    await startHub();
    const r = await cli('echo', ['pi-kitchen', '--bytes', '300000']);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^echo ok: 300000 bytes, set-up \d+ ms, round trip \d+ ms\n$/);
    expect(r.code).toBe(0);
    expect(hub.calls[0]!.path).toBe('/api/v1/devices/pi-kitchen/streams/connect?service=echo');
  });

  it('prints one refusal line and exits 1', async () => {
    await startHub();
    hub.api = () => errorBody('SERVICE_UNKNOWN', 404, 'this agent has no echo service');
    const r = await cli('echo', ['pi-kitchen', '--service', 'echo2', '--timeout', '5000']);
    expect(r).toEqual({ code: 1, out: '', err: 'devstreams: pi-kitchen/echo2 refused: 404 SERVICE_UNKNOWN: this agent has no echo service\n' });
    expect(hub.calls[0]!.path).toMatch(/\/streams\/connect\?service=echo2&timeoutMs=5000$/);
  });

  it('reports a data mismatch', async () => {
    await startHub();
    hub.relay = transformingRelay(
      () => new Transform({ transform: (c: Buffer, _e, cb) => cb(null, Buffer.from(c.map((b) => b ^ 1))) }),
    );
    const ctx = memoryContext();
    expect(await runEcho(ctx, 'pi', 'echo', 100_000, undefined)).toBe(1);
    expect(ctx.stdout).toEqual([]);
    expect(ctx.stderr, ctx.stderr.join('\n')).toHaveLength(1);
    expect(ctx.stderr[0]).toMatch(/^devstreams: echo pi\/echo: data mismatch: 100000 bytes each way, sha256 sent [0-9a-f]{16}, received [0-9a-f]{16}$/);
  });

  it('reports a short read', async () => {
    await startHub();
    let seen = 0;
    hub.relay = transformingRelay(
      () =>
        new Transform({
          transform: (c: Buffer, _e, cb) => {
            const keep = Math.max(0, Math.min(c.length, 50_000 - seen));
            seen += c.length;
            cb(null, c.subarray(0, keep));
          },
        }),
    );
    const ctx = memoryContext();
    expect(await runEcho(ctx, 'pi', 'echo', 100_000, undefined)).toBe(1);
    expect(ctx.stderr).toEqual(['devstreams: echo pi/echo: short read: sent 100000 bytes, received 50000']);
  });

  it('says how far it is while it runs, when asked (the CLI asks on a terminal)', async () => {
    await startHub();
    // The echo holds the first bytes back until a progress line has been written.
    let seen!: () => void;
    const progressed = new Promise<void>((r) => (seen = r));
    hub.relay = transformingRelay(() => new Transform({ transform: (c: Buffer, _e, cb) => void progressed.then(() => cb(null, c)) }));
    const ctx = memoryContext();
    const lines: string[] = [];
    const code = await runEcho(ctx, 'pi', 'echo', 100_000, undefined, { everyMs: 5, line: (t) => (lines.push(t), seen()) });
    expect(code).toBe(0);
    expect(lines[0]).toMatch(/^echo pi\/echo: \d+\.\d MB of 0\.1 MB sent, \d+\.\d MB back, \d+\.\d MB\/s$/);
  });

  it('reports a stream the device aborts', async () => {
    await startHub();
    hub.relay = (ws) => ws.once('message', () => ws.close(4503, 'target went away'));
    const ctx = memoryContext();
    expect(await runEcho(ctx, 'pi', 'echo', 100_000, undefined)).toBe(1);
    expect(ctx.stderr, ctx.stderr.join('\n')).toHaveLength(1);
    expect(ctx.stderr[0]).toMatch(/^devstreams: pi\/echo: stream failed after \d+ of 100000 bytes sent, 0 received: target went away \((DEVICE_OFFLINE|TARGET_UNREACHABLE)\)$/);
  });
});

describe('devstreams connect', () => {
  it('bridges stdin and stdout and exits 0 on a clean end', async () => {
    await startHub();
    const ctx = memoryContext();
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const chunks: Buffer[] = [];
    stdout.on('data', (c: Buffer) => chunks.push(c));
    const data = randomBytes(250_000);
    stdin.end(data);
    expect(await runConnect(ctx, 'pi', 'ssh', undefined, { stdin, stdout })).toBe(0);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    expect(ctx.stderr).toEqual([]);
  });

  it('a stop (the CLI: SIGHUP, SIGTERM, SIGINT) while open closes the stream normally and exits 0; before open, exits 1 quietly', async () => {
    await startHub();
    let closeCode = 0;
    hub.relay = (ws) => ws.once('close', (code: number) => (closeCode = code)); // holds the stream open
    const ctx = memoryContext();
    const stdin = new PassThrough();
    const ac = new AbortController();
    const run = runConnect(ctx, 'pi', 'ssh', undefined, { stdin, stdout: new PassThrough() }, ac.signal);
    await vi.waitFor(() => expect(hub.relaySockets.size).toBe(1));
    ac.abort();
    expect(await run).toBe(0);
    await vi.waitFor(() => expect(closeCode).toBe(1000));
    expect(ctx.stderr).toEqual([]);

    const early = new AbortController();
    early.abort();
    const ctx2 = memoryContext();
    expect(await runConnect(ctx2, 'pi', 'ssh', undefined, { stdin: new PassThrough(), stdout: new PassThrough() }, early.signal)).toBe(1);
    expect(ctx2.stderr).toEqual([]);
  });

  it('reads standard input that is a pipe into the shared read buffer: every byte of many small writes, then EOF', async () => {
    // ssh gives its ProxyCommand pipes; a FIFO is one. Reader first (non-blocking), then the writer.
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-stdin-'));
    const fifo = join(dir, 'in');
    execFileSync('mkfifo', [fifo]);
    const stdin = standardInput(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
    const writer = new net.Socket({ fd: openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK), readable: false, writable: true });
    try {
      expect(stdin).toBeInstanceOf(net.Socket);
      expect(stdin).not.toBe(process.stdin);
      await startHub();
      const ctx = memoryContext();
      const stdout = new PassThrough();
      const chunks: Buffer[] = [];
      stdout.on('data', (c: Buffer) => chunks.push(c));
      const data = randomBytes(300_000);
      for (let i = 0; i < data.length; ) {
        const n = 1 + ((i * 7919) % 3000);
        writer.write(data.subarray(i, i + n));
        i += n;
      }
      writer.end();
      expect(await runConnect(ctx, 'pi', 'ssh', undefined, { stdin, stdout })).toBe(0);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
    } finally {
      writer.destroy();
      (stdin as net.Socket).destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads standard input that is not a pipe or socket (a file, a terminal) as process.stdin', () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-stdin-'));
    writeFileSync(join(dir, 'f'), 'x');
    const fd = openSync(join(dir, 'f'), 'r');
    try {
      expect(standardInput(fd)).toBe(process.stdin);
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 with the refusal line', async () => {
    await startHub();
    hub.api = () => errorBody('DEVICE_OFFLINE', 503, 'device pi is offline');
    const r = await cli('connect', ['pi', 'ssh']);
    expect(r).toEqual({ code: 1, out: '', err: 'devstreams: pi/ssh refused: 503 DEVICE_OFFLINE: device pi is offline\n' });
  });

  it('exits 1 when the stream ends abnormally', async () => {
    await startHub();
    hub.relay = (ws) => ws.once('message', () => ws.close(4502, 'peer gone'));
    const ctx = memoryContext();
    const stdin = new PassThrough();
    stdin.write('hello');
    expect(await runConnect(ctx, 'pi', 'ssh', undefined, { stdin, stdout: new PassThrough() })).toBe(1);
    expect(ctx.stderr).toEqual(['devstreams: pi/ssh: stream failed: peer gone (PEER_GONE)']);
  });
});

describe('devstreams forward', () => {
  it('prints the real port, forwards, and stops on the signal', async () => {
    await startHub();
    const ctx = memoryContext();
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const printed = new Promise<string>((resolve) => {
      ctx.out = (t) => resolve(t);
    });
    const run = runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, stopped);
    const line = await printed;
    const m = /^listening on 127\.0\.0\.1:(\d+) -> pi\/web\n$/.exec(line);
    expect(m).not.toBeNull();
    const s = net.connect({ host: '127.0.0.1', port: Number(m![1]) });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.end('GET / HTTP/1.0\r\n\r\n');
    await new Promise((r) => s.once('end', r));
    expect(Buffer.concat(chunks).toString()).toBe('GET / HTTP/1.0\r\n\r\n');
    stop();
    expect(await run).toBe(0);
  });

  it('reports a port it cannot listen on', async () => {
    await startHub();
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    const ctx = memoryContext();
    expect(await runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port }, undefined, new Promise(() => undefined))).toBe(1);
    expect(ctx.stderr).toEqual([`devstreams: cannot listen on 127.0.0.1:${port}: the port is in use (another forward, or another program, listens there), EADDRINUSE`]);
    await new Promise((r) => busy.close(r));
  });

  it('requires --listen', async () => {
    await startHub();
    await expect(cli('forward', ['pi', 'web'])).rejects.toThrow('forward: --listen [HOST:]PORT is required');
  });

  it('ends before listening when the hub refuses the token, the device or the service', async () => {
    await startHub();
    for (const [code, status] of [['UNAUTHORIZED', 401], ['DEVICE_UNKNOWN', 404], ['FORBIDDEN', 403]] as const) {
      // The service is asked about with the device, so a token scoped away from it ends forward too.
      hub.api = (call, h) => (call.method === 'GET' && call.path === '/api/v1/devices/pi?service=web' ? errorBody(code, status, 'no') : h.defaultApi(call));
      const ctx = memoryContext();
      ctx.out = () => expect.unreachable('forward listened');
      expect(await runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise(() => undefined))).toBe(1);
      expect(ctx.stderr).toEqual([`devstreams: pi/web refused: ${status} ${code}: no`]);
      expect(hub.calls.some((c) => c.method === 'POST' || /\/connect/.test(c.path))).toBe(false);
    }
  });

  it('listens anyway, with a note, when the hub cannot answer for the device now', async () => {
    await startHub();
    hub.api = (call, h) => (call.method === 'GET' && call.path === '/api/v1/devices/pi?service=web' ? errorBody('INTERNAL', 500, 'history store failing') : h.defaultApi(call));
    const ctx = memoryContext();
    let stop!: () => void;
    const run = runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise<void>((r) => (stop = r)));
    const line = await new Promise<string>((resolve) => (ctx.out = resolve));
    expect(line).toMatch(/^listening on 127\.0\.0\.1:\d+ -> pi\/web\n$/);
    expect(ctx.stderr).toEqual(['devstreams: could not check pi with the hub, listening anyway: history store failing']);
    stop();
    expect(await run).toBe(0);
  });

  it('notes an offline device, then prints one line per refused or failed connection', async () => {
    await startHub();
    hub.api = (call, h) => {
      if (call.method === 'GET' && call.path === '/api/v1/devices/pi?service=web') return { status: 200, body: { id: 'pi', online: false, lastSeen: null, agentVersion: null, openStreams: null } };
      return call.method === 'POST' ? errorBody('DEVICE_OFFLINE', 503, 'device "pi" is offline') : h.defaultApi(call);
    };
    hub.connectRoute = false;
    const ctx = memoryContext();
    let stop!: () => void;
    const run = runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise<void>((r) => (stop = r)));
    const port = await new Promise<number>((resolve) => (ctx.out = (t) => resolve(Number(/:(\d+) ->/.exec(t)![1]))));
    expect(ctx.stderr).toEqual(['devstreams: pi is offline now: each connection is refused until it comes online']);
    const refused = net.connect({ host: '127.0.0.1', port });
    const local = await new Promise<number>((r) => refused.once('connect', () => r(refused.localPort!)));
    await new Promise((r) => refused.on('error', () => undefined).once('close', r));
    expect(ctx.stderr[1]).toBe(`devstreams: pi/web refused: 503 DEVICE_OFFLINE: device "pi" is offline (from 127.0.0.1:${local})`);

    // Open, then the relay ends the stream abnormally: the device side failed.
    hub.api = (call, h) => h.defaultApi(call);
    hub.relay = (ws) => ws.close(4502, 'agent went away');
    const failed = net.connect({ host: '127.0.0.1', port });
    const local2 = await new Promise<number>((r) => failed.once('connect', () => r(failed.localPort!)));
    await new Promise((r) => failed.on('error', () => undefined).once('close', r));
    await vi.waitFor(() => expect(ctx.stderr).toHaveLength(3));
    expect(ctx.stderr[2]).toMatch(new RegExp(`^devstreams: pi/web: stream failed: .*agent went away.* \\(from 127\\.0\\.0\\.1:${local2}\\)$`));
    stop();
    expect(await run).toBe(0);
  });

  /** A client connection through the forward whose stream is open: it has had its bytes echoed. */
  async function openThrough(port: number): Promise<net.Socket> {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.write('ping');
    await new Promise((r) => s.once('data', r));
    return s;
  }

  it('ends with 1 when a connection is refused UNAUTHORIZED after start (the token revoked), cutting the open ones', async () => {
    await startHub();
    const ctx = memoryContext();
    const run = runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise(() => undefined));
    const port = await new Promise<number>((resolve) => (ctx.out = (t) => resolve(Number(/:(\d+) ->/.exec(t)![1]))));
    const open = await openThrough(port);
    hub.api = (call, h) => (/\/streams/.test(call.path) ? errorBody('UNAUTHORIZED', 401, 'the service token is no longer valid') : h.defaultApi(call));
    const refused = net.connect({ host: '127.0.0.1', port });
    refused.on('error', () => undefined);
    const local = await new Promise<number>((r) => refused.once('connect', () => r(refused.localPort!)));
    expect(await run).toBe(1);
    expect(ctx.stderr).toEqual([
      `devstreams: pi/web refused: 401 UNAUTHORIZED: the service token is no longer valid (from 127.0.0.1:${local})`,
      'devstreams: forward ends: the hub no longer accepts its token, every connection would be refused',
      'devstreams: closing 1 open connection',
    ]);
    await new Promise((r) => (open.destroyed ? r(undefined) : open.once('close', r)));
  });

  it('keeps listening after other refusals of a connection', async () => {
    await startHub();
    const ctx = memoryContext();
    let stop!: () => void;
    const run = runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise<void>((r) => (stop = r)));
    const port = await new Promise<number>((resolve) => (ctx.out = (t) => resolve(Number(/:(\d+) ->/.exec(t)![1]))));
    hub.api = (call, h) => (/\/streams/.test(call.path) ? errorBody('FORBIDDEN', 403, 'not this service') : h.defaultApi(call));
    const refused = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => refused.on('error', () => undefined).once('close', r));
    hub.api = (call, h) => h.defaultApi(call);
    const open = await openThrough(port); // the next connection is forwarded
    stop();
    expect(await run).toBe(0);
    expect(ctx.stderr, ctx.stderr.join('\n')).toHaveLength(2);
    expect(ctx.stderr[0]).toMatch(/^devstreams: pi\/web refused: 403 FORBIDDEN: not this service \(from /);
    expect(ctx.stderr[1]).toBe('devstreams: closing 1 open connection');
    await new Promise((r) => (open.destroyed ? r(undefined) : open.once('close', r)));
  });

  it('says how many open connections it cuts when it stops', async () => {
    await startHub();
    const ctx = memoryContext();
    let stop!: () => void;
    const run = runForward(ctx, 'pi', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise<void>((r) => (stop = r)));
    const port = await new Promise<number>((resolve) => (ctx.out = (t) => resolve(Number(/:(\d+) ->/.exec(t)![1]))));
    const a = await openThrough(port);
    const b = await openThrough(port);
    stop();
    expect(await run).toBe(0);
    expect(ctx.stderr).toEqual(['devstreams: closing 2 open connections']);
    for (const s of [a, b]) await new Promise((r) => (s.destroyed ? r(undefined) : s.once('close', r)));
  });

  it('warns when it listens where other hosts can reach it', () => {
    expect(exposedWarning('0.0.0.0', 'pi', 'ssh')).toMatch(/^devstreams: warning: listening on 0\.0\.0\.0, not loopback: .* pi\/ssh with your token$/);
    expect(exposedWarning('192.168.1.5', 'pi', 'ssh')).not.toBeNull();
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost']) expect(exposedWarning(host, 'pi', 'ssh')).toBeNull();
  });
});

describe('devstreams devices and streams', () => {
  it('prints tables or JSON', async () => {
    await startHub();
    const device = { id: 'pi-1', online: true, lastSeen: Date.now() - 3000, agentVersion: '0.1.0', openStreams: 0 };
    hub.api = (call, h) => (call.path === '/api/v1/devices' ? { status: 200, body: { devices: [device] } } : h.defaultApi(call));
    const t = await cli('devices', []);
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/^ID {4}STATE {3}LAST SEEN {2}VERSION {2}SYSTEM UPTIME {2}STREAMS\npi-1 {2}online {2}\ds ago {5}0\.1\.0 {4}- {14}0\n$/);
    const j = await cli('devices', ['--json']);
    expect(JSON.parse(j.out)).toEqual([device]);
    const s = await cli('streams', ['--json']);
    expect(JSON.parse(s.out)).toEqual([]);
  });

  it("points a TLS trust failure at --ca / DEVSTREAMS_CA (the SDK's message names its `ca` option)", async () => {
    await startHub();
    const other = makeTestTls();
    await expect(runServiceCli('devices', ['--hub', hub.url, '--token', TOKEN, '--ca', other.caFile])).rejects.toThrow(/ \(is --ca \/ DEVSTREAMS_CA the hub's CA\?\)$/);
  });

  it('lets a refused query propagate as a DevstreamsError', async () => {
    await startHub();
    hub.api = () => errorBody('UNAUTHORIZED', 401, 'unknown service token');
    await expect(cli('streams', [])).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: 'unknown service token' });
  });
});

describe('usage', () => {
  it('names missing settings as ConfigErrors', async () => {
    await startHub();
    const saved = { ...process.env };
    delete process.env.DEVSTREAMS_HUB;
    try {
      await expect(runServiceCli('devices', ['--token', TOKEN])).rejects.toThrow(ConfigError);
      await expect(runServiceCli('devices', ['--token', TOKEN])).rejects.toThrow('pass --hub URL or set DEVSTREAMS_HUB');
      await expect(runServiceCli('connect', ['pi'])).rejects.toThrow('connect: missing SERVICE');
      await expect(runServiceCli('echo', ['pi', '--bytes', '-1'])).rejects.toThrow(ConfigError);
    } finally {
      process.env = saved;
    }
  });
});
