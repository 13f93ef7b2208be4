import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { StreamRecord } from '../../protocol/index.js';
import { loadHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { StatusCollector } from '../../agent/status-collector.js';
import { DeviceSystemSchema, silentLogger } from '../../protocol/index.js';
import { initHub } from '../../hub/init.js';
import { captureLogger, tempDir } from '../hub/helpers.js';

/** /healthz and /readyz of a real hub whose stream history is made unreachable; probes that fail. */

const hubs: { hub: Hub; dir: string }[] = [];
afterEach(async () => {
  for (const { hub, dir } of hubs.splice(0)) {
    await hub.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function startHub(): Promise<{ hub: Hub; dir: string; ca: string; dataDir: string }> {
  const dir = tempDir();
  initHub({ dir, listen: '127.0.0.1:0' });
  const loaded = loadHubConfig(join(dir, 'hub.yaml'));
  const dataDir = join(dir, 'data');
  const config = { ...loaded.config, history: { ...loaded.config.history, file: join(dataDir, 'history.sqlite') } };
  const hub = new Hub({ config, log: captureLogger().log });
  hubs.push({ hub, dir });
  await hub.start();
  return { hub, dir, ca: readFileSync(join(dir, 'tls', 'ca.crt'), 'utf8'), dataDir };
}

function get(hub: Hub, ca: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, hub.url), { ca, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

const record = (id: string): StreamRecord => ({
  streamId: id.padEnd(22, 'x'), device: 'd1', service: 'ssh', result: 'ok', status: 200, code: 'OK', reason: '',
  closedBy: 'service', openedAt: Date.now() - 10, closedAt: Date.now(), durationMs: 10, bytesToDevice: 1, bytesFromDevice: 2,
  requestedBy: 'ops',
});

describe('health and readiness', () => {
  it('/readyz fails while the stream history cannot be written, and recovers; /healthz stays up', async () => {
    const { hub, ca, dataDir } = await startHub();
    expect(await get(hub, ca, '/healthz')).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await get(hub, ca, '/readyz')).toEqual({ status: 200, body: { ready: true, checks: { broker: 'ok', store: 'ok' } } });

    rmSync(dataDir, { recursive: true, force: true });
    expect(await get(hub, ca, '/readyz')).toEqual({ status: 503, body: { ready: false, checks: { broker: 'ok', store: 'failing' } } });
    expect((await get(hub, ca, '/healthz')).status).toBe(200);
    hub.streamLog.add(record('a')); // stored in memory; the write to disk fails, the hub goes on
    await hub.history.flush();
    expect(hub.streamLog.list()).toHaveLength(1);

    mkdirSync(dataDir);
    // The folder is back but the last write failed: still not ready until a write succeeds.
    expect((await get(hub, ca, '/readyz')).status).toBe(503);
    await hub.history.flush();
    expect((await get(hub, ca, '/readyz')).status).toBe(200);
    expect(readFileSync(join(dataDir, 'history.sqlite')).subarray(0, 15).toString()).toBe('SQLite format 3');
  });

  it('/readyz fails once the store is closed', async () => {
    const { hub, ca } = await startHub();
    await hub.history.stop();
    expect(await get(hub, ca, '/readyz')).toMatchObject({ status: 503, body: { checks: { store: 'failing' } } });
  });

  it('keeps only the newest records and drops old ones (retention)', async () => {
    const { hub } = await startHub();
    for (let i = 0; i < 5; i++) hub.streamLog.add({ ...record(`r${i}`), closedAt: Date.now() - (i === 0 ? 40 * 86_400_000 : 0) });
    await hub.history.flush(); // a write prunes: r0 is older than 30 days
    expect(hub.streamLog.list().map((r) => r.streamId.slice(0, 2))).toEqual(['r4', 'r3', 'r2', 'r1']);
  });
});

describe('status probes', () => {
  it('a probe that fails or times out leaves its field null; the status stays valid', async () => {
    // /proc/meminfo a FIFO that nothing writes: the memory probe's open() waits past the timeout,
    // whatever the machine's speed. The rest of the tree is empty: those probes fail.
    const root = tempDir();
    mkdirSync(join(root, 'proc'));
    const fifo = join(root, 'proc/meminfo');
    execFileSync('mkfifo', [fifo]);
    const c = new StatusCollector({ probeTimeoutMs: 100, log: silentLogger, root });
    try {
      await c.refresh();
      const s = DeviceSystemSchema.parse(c.snapshot());
      expect(s.memAvailableBytes).toBeNull(); // timed out
      expect(s.cpuTempC).toBeNull(); // failed: no /sys in the tree
      expect(s.memTotalBytes).toBeGreaterThan(0); // from os, no probe
    } finally {
      // A writer that opens and closes lets the waiting open() return (and read nothing).
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('agent metrics listener config', () => {
  it('refuses a non-loopback address unless allowed, naming the field', async () => {
    const { AgentConfigSchema } = await import('../../agent/config.js');
    const base = { hub: { url: 'wss://hub.example.com/mqtt', deviceId: 'd1', key: 'k'.repeat(43) }, allow: [] };
    const bad = AgentConfigSchema.safeParse({ ...base, metrics: { listen: '0.0.0.0:9464' } });
    expect(bad.success).toBe(false);
    expect(JSON.stringify(bad.error?.issues)).toContain('loopback');
    expect(bad.error?.issues[0]?.path).toEqual(['metrics', 'listen']);
    expect(AgentConfigSchema.safeParse({ ...base, metrics: { listen: '0.0.0.0:9464', allowNonLoopback: true } }).success).toBe(true);
    expect(AgentConfigSchema.safeParse({ ...base, metrics: { listen: '[::1]:9464' } }).success).toBe(true);
  });
});
