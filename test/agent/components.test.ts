import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StatusThrottle } from '../../agent/status-throttle.js';
import { StreamTable } from '../../agent/stream-table.js';
import { TargetDialer } from '../../agent/target-dialer.js';
import { DevstreamsError } from '../../protocol/index.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('TargetDialer', () => {
  it('connects with TCP_NODELAY and leaves the socket paused', async () => {
    const server = createServer((s) => s.on('error', () => {}).end('hi'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = await new TargetDialer({ connectTimeoutMs: 2000 }).dial('127.0.0.1', (server.address() as AddressInfo).port);
    expect(socket.readableFlowing).toBe(null);
    expect(socket.allowHalfOpen).toBe(true);
    socket.destroy();
    server.close();
  });

  it('gives up after connectTimeoutMs with TARGET_UNREACHABLE naming host:port', async () => {
    // TEST-NET-1: never answers (or is unreachable at once without a route); either way a 503.
    const err = await new TargetDialer({ connectTimeoutMs: 150 }).dial('192.0.2.1', 9).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DevstreamsError);
    expect((err as DevstreamsError).code).toBe('TARGET_UNREACHABLE');
    expect((err as DevstreamsError).reason).toMatch(/^cannot connect to 192\.0\.2\.1:9: E[A-Z]+/);
  });

  it('stops a connect in progress when aborted', async () => {
    const ac = new AbortController();
    const p = new TargetDialer({ connectTimeoutMs: 5000 }).dial('192.0.2.1', 9, ac.signal).catch((e: unknown) => e);
    ac.abort();
    const err = (await p) as DevstreamsError;
    expect(['SHUTTING_DOWN', 'TARGET_UNREACHABLE']).toContain(err.code);
  });
});

describe('StreamTable', () => {
  it('counts setups and open streams against the limit and reports changes', async () => {
    const counts: number[] = [];
    const t = new StreamTable({ maxStreams: 2, onChange: (n) => counts.push(n) });
    const a = t.reserve('a', 'echo')!;
    expect(t.reserve('a', 'echo')).toBe(null);
    const b = t.reserve('b', 'echo')!;
    expect(t.isFull).toBe(true);
    expect(t.reserve('c', 'echo')).toBe(null);
    t.release(a);
    t.release(a);
    expect(t.size).toBe(1);
    expect(counts).toEqual([1, 2, 1]);
    await t.stop(10);
    expect(b.abort.signal.aborted).toBe(true);
    expect(t.size).toBe(0);
    expect(t.reserve('d', 'echo')).toBe(null);
  });
});

describe('StatusThrottle', () => {
  it('publishes at most once per interval, with the latest state', () => {
    vi.useFakeTimers();
    let n = 0;
    const th = new StatusThrottle({ minIntervalMs: 1000, publish: () => n++ });
    th.published();
    th.poke();
    th.poke();
    expect(n).toBe(0);
    vi.advanceTimersByTime(999);
    expect(n).toBe(0);
    vi.advanceTimersByTime(1);
    expect(n).toBe(1);
    vi.advanceTimersByTime(5000);
    th.poke();
    expect(n).toBe(2);
    th.poke();
    th.cancel();
    vi.advanceTimersByTime(5000);
    expect(n).toBe(2);
  });
});
