import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, type StreamRecord } from '../../protocol/index.js';
import { HistoryStore } from '../../hub/history-store.js';

const dir = mkdtempSync(join(tmpdir(), 'devstreams-history-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function record(i: number): StreamRecord {
  const openedAt = 1_700_000_000_000 + i * 1000;
  return {
    streamId: `s${String(i).padStart(21, '0')}`, device: i % 2 ? 'odd' : 'even', service: 'ssh', requestedBy: null,
    result: 'ok', status: 200, code: 'OK', reason: 'ok', closedBy: 'service',
    openedAt, closedAt: openedAt + 10, durationMs: 10, bytesToDevice: i, bytesFromDevice: 2 * i,
  };
}

describe('HistoryStore (records inserted in batches)', () => {
  it('a record is visible to the next query at once, even in the same turn of the event loop', async () => {
    const store = new HistoryStore({ file: null, maxAgeMs: Number.MAX_SAFE_INTEGER, maxRecords: 10_000, log: silentLogger });
    await store.start();
    store.insert(record(1));
    expect(store.query({}).map((r) => r.streamId)).toEqual([record(1).streamId]);
    for (let i = 2; i <= 500; i++) store.insert(record(i));
    expect(store.count()).toBe(500);
    const odd = store.query({ device: 'odd', limit: 3 });
    expect(odd.map((r) => r.bytesToDevice)).toEqual([499, 497, 495]);
    await store.stop();
  });

  it('records inserted just before stop are written to the file and read back', async () => {
    const file = join(dir, 'h.sqlite');
    const a = new HistoryStore({ file, maxAgeMs: Number.MAX_SAFE_INTEGER, maxRecords: 10_000, log: silentLogger, flushDelayMs: 60_000 });
    await a.start();
    for (let i = 1; i <= 300; i++) a.insert(record(i));
    await a.stop();
    const b = new HistoryStore({ file, maxAgeMs: Number.MAX_SAFE_INTEGER, maxRecords: 10_000, log: silentLogger });
    await b.start();
    expect(b.count()).toBe(300);
    expect(b.query({ limit: 1 })[0]).toEqual(record(300));
    await b.stop();
  });

  it('retention keeps the newest maxRecords at each write', async () => {
    const file = join(dir, 'r.sqlite');
    const store = new HistoryStore({ file, maxAgeMs: Number.MAX_SAFE_INTEGER, maxRecords: 100, log: silentLogger, flushDelayMs: 60_000 });
    await store.start();
    for (let i = 1; i <= 250; i++) store.insert(record(i));
    await store.flush();
    expect(store.count()).toBe(100);
    expect(store.query({ limit: 1000 }).at(-1)!.bytesToDevice).toBe(151);
    await store.stop();
  });
});
