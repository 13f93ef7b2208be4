import { afterEach, describe, expect, it, vi } from 'vitest';
import { IdleMemoryReclaimer, collectGarbage, silentLogger } from '../../protocol/index.js';

afterEach(() => {
  vi.useRealTimers();
});

function reclaimer(busy: { now: boolean }) {
  const collect = vi.fn(() => 12);
  const r = new IdleMemoryReclaimer({ idleMs: 10_000, busy: () => busy.now, collect, log: silentLogger });
  return { r, collect };
}

describe('IdleMemoryReclaimer: a full collection once the agent has been idle for a while', () => {
  it('collects once, idleMs after the last change, and not again until something changes', () => {
    vi.useFakeTimers();
    const busy = { now: false };
    const { r, collect } = reclaimer(busy);
    r.poke(); // online
    vi.advanceTimersByTime(9_999);
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60_000);
    expect(collect).toHaveBeenCalledTimes(1);
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
