import { afterEach, describe, expect, it, vi } from 'vitest';
import { IdleMemoryReclaimer, TRIM_AFTER_GC_MS, collectGarbage, silentLogger } from '../../protocol/index.js';
import { captureLogger } from '../service/log-capture.js';

afterEach(() => {
  vi.useRealTimers();
});

function reclaimer(busy: { now: boolean }) {
  const collect = vi.fn(() => 12);
  const trim = vi.fn(() => true);
  const r = new IdleMemoryReclaimer({ idleMs: 10_000, busy: () => busy.now, collect, trim, log: silentLogger });
  return { r, collect, trim };
}

describe('IdleMemoryReclaimer: a full collection once the agent has been idle for a while', () => {
  it("collects once, idleMs after the last change, trims glibc's heap after it, and not again until something changes", () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const { r, collect, trim } = reclaimer(busy);
    r.poke(); // online
    vi.advanceTimersByTime(9_999);
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(1);
    // V8 frees the dead buffers on a background thread: the trim comes a moment later.
    expect(trim).not.toHaveBeenCalled();
    vi.advanceTimersByTime(TRIM_AFTER_GC_MS);
    expect(trim).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60_000);
    expect(collect).toHaveBeenCalledTimes(1);
    expect(trim).toHaveBeenCalledTimes(1);
  });

  it('a stream that opens between the collection and the trim cancels the trim; the next idle period trims', () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const { r, collect, trim } = reclaimer(busy);
    r.poke();
    vi.advanceTimersByTime(10_000);
    expect(collect).toHaveBeenCalledTimes(1);
    busy.now = true;
    r.poke();
    vi.advanceTimersByTime(60_000);
    expect(trim).not.toHaveBeenCalled();
    busy.now = false;
    r.poke();
    vi.advanceTimersByTime(10_000 + TRIM_AFTER_GC_MS);
    expect(collect).toHaveBeenCalledTimes(2);
    expect(trim).toHaveBeenCalledTimes(1);
  });

  it('without the native helper it says why, once, and still collects', () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const collect = vi.fn(() => 12);
    const { log, lines } = captureLogger('debug');
    // Under vitest the program is not dist/devstreams.mjs: no dist/native/ next to it.
    const r = new IdleMemoryReclaimer({ idleMs: 10_000, busy: () => busy.now, collect, log });
    for (let i = 0; i < 2; i++) {
      r.poke();
      vi.advanceTimersByTime(10_000 + TRIM_AFTER_GC_MS);
    }
    expect(collect).toHaveBeenCalledTimes(2);
    const unavailable = lines.filter((l) => l.msg === 'glibc heap not tuned or trimmed (native helper unavailable)');
    expect(unavailable).toHaveLength(1);
    expect(unavailable[0]?.reason).toMatch(/malloc-trim-linux-/);
    const given = lines.filter((l) => l.msg === 'idle: memory given back');
    expect(given.map((l) => [l.gcMs, l.trimmed])).toEqual([
      [12, null],
      [12, null],
    ]);
  });

  it('waits while streams are open, and starts the wait again when the last one closes', () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const { r, collect } = reclaimer(busy);
    r.poke();
    vi.advanceTimersByTime(5_000);
    busy.now = true; // a stream opened
    r.poke();
    vi.advanceTimersByTime(30_000);
    expect(collect).not.toHaveBeenCalled();
    busy.now = false; // it closed
    r.poke();
    vi.advanceTimersByTime(9_000);
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1_000);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('does not collect when a stream is open at the moment the wait ends, nor after stop()', () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const { r, collect } = reclaimer(busy);
    r.poke();
    busy.now = true; // opened without a poke reaching us yet
    vi.advanceTimersByTime(10_000);
    expect(collect).not.toHaveBeenCalled();
    busy.now = false;
    r.poke();
    r.stop();
    r.poke();
    vi.advanceTimersByTime(60_000);
    expect(collect).not.toHaveBeenCalled();
  });

  it('without a collection (the hub), it trims as soon as the wait ends', () => {
    vi.useFakeTimers();
    const trim = vi.fn(() => true);
    const { log, lines } = captureLogger('info');
    const r = new IdleMemoryReclaimer({ idleMs: 10_000, busy: () => false, collect: null, trim, log });
    r.poke();
    vi.advanceTimersByTime(9_999);
    expect(trim).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(trim).toHaveBeenCalledTimes(1);
    expect(lines.filter((l) => l.msg === 'idle: memory given back').map((l) => [l.gcMs, l.trimmed])).toEqual([[null, true]]);
  });

  it('does not trim after stop(), even with the collection done', () => {
    vi.useFakeTimers();
    const { r, collect, trim } = reclaimer({ now: false });
    r.poke();
    vi.advanceTimersByTime(10_000);
    expect(collect).toHaveBeenCalledTimes(1);
    r.stop();
    vi.advanceTimersByTime(60_000);
    expect(trim).not.toHaveBeenCalled();
  });

  it('collectGarbage runs a real full collection without putting gc on the global object', async () => {
    const ref = new WeakRef({ garbage: Buffer.alloc(1024) });
    await new Promise((r) => setImmediate(r)); // a WeakRef's target lives until the end of the job that made it
    const ms = collectGarbage();
    expect(ref.deref()).toBeUndefined();
    expect(ms).toBeTypeOf('number');
    expect(ms).toBeGreaterThanOrEqual(0);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });
});

describe("IdleMemoryReclaimer: glibc's heap thresholds while busy", () => {
  const RELAY = Object.freeze({ trim: 256 * 1024 * 1024, mmap: 32 * 1024 * 1024 });

  function withThresholds(busy: { now: boolean }, want: { value: typeof RELAY | null }, result: boolean | null = true) {
    const set = vi.fn((_t: { trim: number; mmap: number }) => result);
    const { log, lines } = captureLogger('debug');
    const r = new IdleMemoryReclaimer({ idleMs: 10_000, busy: () => busy.now, collect: () => 1, trim: () => true, keepWhileBusy: () => want.value, setThresholds: set, log });
    return { r, set, lines };
  }

  it('sets them at the first busy poke, once, and not while idle', () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const { r, set, lines } = withThresholds(busy, { value: RELAY });
    r.poke(); // online, idle
    expect(set).not.toHaveBeenCalled();
    busy.now = true; // a stream opened
    r.poke();
    r.poke(); // another
    expect(set.mock.calls).toEqual([[RELAY]]);
    busy.now = false;
    r.poke();
    vi.advanceTimersByTime(10_000 + TRIM_AFTER_GC_MS);
    busy.now = true;
    r.poke();
    expect(set).toHaveBeenCalledTimes(1);
    const said = lines.filter((l) => l.msg === "busy: glibc's heap thresholds");
    expect(said.map((l) => [l.trimThreshold, l.mmapThreshold, l.set])).toEqual([[RELAY.trim, RELAY.mmap, true]]);
  });

  it("a reload that asks for none puts glibc's own back at the next busy poke", () => {
    const busy = { now: true };
    const want: { value: typeof RELAY | null } = { value: RELAY };
    const { r, set } = withThresholds(busy, want);
    r.poke();
    want.value = null; // the agent's runtime.gc became memory
    r.poke();
    r.poke();
    expect(set.mock.calls).toEqual([[RELAY], [{ trim: 128 * 1024, mmap: 128 * 1024 }]]);
  });

  it('asks for nothing by default (the SDK, a process that did not opt in)', () => {
    const set = vi.fn(() => true);
    const r = new IdleMemoryReclaimer({ busy: () => true, collect: null, trim: () => true, setThresholds: set, log: silentLogger });
    r.poke();
    r.poke();
    expect(set).not.toHaveBeenCalled();
  });

  it('refused by glibc: said once, not at every stream; unavailable: nothing thrown', () => {
    const busy = { now: true };
    const refused = withThresholds(busy, { value: RELAY }, false);
    refused.r.poke();
    refused.r.poke();
    expect(refused.set).toHaveBeenCalledTimes(1);
    expect(refused.lines.filter((l) => l.msg === "busy: glibc's heap thresholds").map((l) => l.set)).toEqual([false]);
    const missing = withThresholds(busy, { value: RELAY }, null);
    expect(() => missing.r.poke()).not.toThrow();
    expect(missing.lines.filter((l) => l.msg === "busy: glibc's heap thresholds")).toEqual([]);
  });
});
