import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ApiErrorSchema,
  DevstreamsError,
  MUX_SERVICE_PATH,
  MUX_SUBPROTOCOL,
  MuxConnection,
  StreamListSchema,
  apiPaths,
  hashSecret,
  newSecret,
  type StreamRecord,
} from '../../protocol/index.js';
import { HubLimitsSchema } from '../../hub/config.js';
import { HubRefusals } from '../../hub/hub-refusals.js';
import type { StreamLog } from '../../hub/stream-log.js';
import { createToken } from '../../hub/token-admin.js';
import { refusalOf } from '../helpers/streams.js';
import { parsePrometheusText, valueOf } from '../observability/prom-text.js';
import { api, captureLogger, connectDevice, dialRelay, fakeAgent, startTestHub, until, type TestHub } from './helpers.js';

// Stream requests the hub refuses itself, once the service token is valid (hub/hub-refusals.ts):
// each is in the stream history, in devstreams_hub_streams_total{result="refused"} and in the log,
// like a device's refusal. Requests without a valid token, and malformed ones, are none of these.

const PINO_INFO = 30;
const PINO_WARN = 40;

/** The history as the default (full-scope) token reads it. */
async function history(t: TestHub, token = t.token): Promise<StreamRecord[]> {
  const r = await api(t, 'GET', `${apiPaths.streams}?limit=1000`, { token });
  expect(r.status).toBe(200);
  return StreamListSchema.parse(r.body).streams;
}

/** devstreams_hub_streams_total{result="refused"}, as the exposition shows it (this family alone: the process metrics are not ours). */
async function refusedCount(t: TestHub): Promise<number> {
  const text = await t.hub.metrics.registry.getSingleMetricAsString('devstreams_hub_streams_total');
  return valueOf(parsePrometheusText(`${text}\n`), 'devstreams_hub_streams_total', { result: 'refused' }) ?? 0;
}

/** The hub's `stream ended` log lines about `device`. */
function endedLines(t: TestHub, device: string): Record<string, unknown>[] {
  return t.logs.lines().filter((l) => l.msg === 'stream ended' && l.device === device);
}

function errorCodeOf(r: { status: number; body: unknown }): string {
  return ApiErrorSchema.parse(r.body).error.code;
}

/**
 * Checks that exactly one refusal of the hub's own about `device` was recorded since `before`
 * (the metric's value then): one history record, the metric one up, one log line; returns the record.
 */
async function expectRecorded(
  t: TestHub,
  before: number,
  want: { device: string; service: string; code: string; status: number; requestedBy: string },
): Promise<StreamRecord> {
  const records = (await history(t)).filter((r) => r.device === want.device);
  expect(records).toHaveLength(1);
  const rec = records[0]!;
  expect(rec).toMatchObject({ ...want, result: 'refused', closedBy: 'none', bytesToDevice: 0, bytesFromDevice: 0 });
  expect(rec.streamId).toMatch(/^[A-Za-z0-9_-]{22}$/);
  expect(rec.reason.length).toBeGreaterThan(0);
  expect(await refusedCount(t)).toBe(before + 1);
  const lines = endedLines(t, want.device);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ ...want, result: 'refused', reason: rec.reason, streamId: rec.streamId });
  expect(lines[0]!.level).toBe(want.code === 'FORBIDDEN' ? PINO_WARN : PINO_INFO);
  return rec;
}

describe("the hub's own refusals of an authenticated request", () => {
  let t: TestHub;
  let online: MqttClient;
  let onlineRequests: Awaited<ReturnType<typeof fakeAgent>>;
  let scoped: string;

  beforeAll(async () => {
    t = await startTestHub();
    t.addDevice('rf-offline');
    online = await connectDevice(t, 'rf-online', t.addDevice('rf-online'));
    onlineRequests = await fakeAgent(online, 'rf-online', () => ({ status: 403, code: 'SERVICE_DENIED', reason: 'not in the allowlist' }));
    await until(() => t.hub.presence.isOnline('rf-online'), 3000, 'device online');
    scoped = createToken({ configFile: join(t.dir, 'hub.yaml'), name: 'rf-scoped', devices: 'rf-*', services: 'echo' }).token;
  });
  afterAll(async () => {
    await online?.endAsync(true);
    await t?.stop();
  });

  it('404 DEVICE_UNKNOWN: recorded with the device id the request named', async () => {
    const before = await refusedCount(t);
    const r = await api(t, 'POST', apiPaths.openStream('rf-ghost'), { body: { service: 'ssh' } });
    expect([r.status, errorCodeOf(r)]).toEqual([404, 'DEVICE_UNKNOWN']);
    await expectRecorded(t, before, { device: 'rf-ghost', service: 'ssh', code: 'DEVICE_UNKNOWN', status: 404, requestedBy: 'default' });
  });

  it('503 DEVICE_OFFLINE: recorded', async () => {
    const before = await refusedCount(t);
    const r = await api(t, 'POST', apiPaths.openStream('rf-offline'), { body: { service: 'web' } });
    expect([r.status, errorCodeOf(r)]).toEqual([503, 'DEVICE_OFFLINE']);
    await expectRecorded(t, before, { device: 'rf-offline', service: 'web', code: 'DEVICE_OFFLINE', status: 503, requestedBy: 'default' });
  });

  it('403 FORBIDDEN (a service outside the scope): recorded at warn with the token name; the device is not asked', async () => {
    const before = await refusedCount(t);
    const asked = onlineRequests.length;
    const r = await api(t, 'POST', apiPaths.openStream('rf-online'), { token: scoped, body: { service: 'ssh' } });
    expect([r.status, errorCodeOf(r)]).toEqual([403, 'FORBIDDEN']);
    expect(onlineRequests.length).toBe(asked);
    await expectRecorded(t, before, { device: 'rf-online', service: 'ssh', code: 'FORBIDDEN', status: 403, requestedBy: 'rf-scoped' });
  });

  it('403 FORBIDDEN (a device outside the scope): recorded; the scoped token does not see that record', async () => {
    const before = await refusedCount(t);
    const r = await api(t, 'POST', apiPaths.openStream('lab-ghost'), { token: scoped, body: { service: 'echo' } });
    expect([r.status, errorCodeOf(r)]).toEqual([403, 'FORBIDDEN']);
    await expectRecorded(t, before, { device: 'lab-ghost', service: 'echo', code: 'FORBIDDEN', status: 403, requestedBy: 'rf-scoped' });
    expect((await history(t, scoped)).map((rec) => rec.device)).not.toContain('lab-ghost');
  });

  it('the open-and-connect upgrade and an OPEN on a multiplexed connection are recorded the same way', async () => {
    let before = await refusedCount(t);
    const upgrade = await dialRelay(t, `wss://localhost:${t.port}${apiPaths.openStream('rf-ghost-upgrade')}/connect?service=ssh`, t.token);
    if ('ws' in upgrade) throw new Error('the upgrade was accepted');
    expect([upgrade.status, upgrade.body.error.code]).toEqual([404, 'DEVICE_UNKNOWN']);
    await expectRecorded(t, before, { device: 'rf-ghost-upgrade', service: 'ssh', code: 'DEVICE_UNKNOWN', status: 404, requestedBy: 'default' });

    before = await refusedCount(t);
    const dialled = await dialRelay(t, `wss://localhost:${t.port}${MUX_SERVICE_PATH}`, t.token, { protocol: MUX_SUBPROTOCOL });
    if (!('ws' in dialled)) throw new Error(`multiplexed connection refused: ${JSON.stringify(dialled.body)}`);
    try {
      const conn = new MuxConnection({ ws: dialled.ws, role: 'client' });
      const err = await refusalOf(conn.open({ device: 'rf-offline', service: 'plc' }, { timeoutMs: 5000 }));
      expect(err).toBeInstanceOf(DevstreamsError);
      expect(err.code).toBe('DEVICE_OFFLINE');
    } finally {
      dialled.ws.terminate();
    }
    const rec = (await history(t)).find((r) => r.device === 'rf-offline' && r.service === 'plc');
    expect(rec).toMatchObject({ result: 'refused', code: 'DEVICE_OFFLINE', status: 503, requestedBy: 'default' });
    expect(await refusedCount(t)).toBe(before + 1);
    expect(endedLines(t, 'rf-offline').filter((l) => l.service === 'plc')).toHaveLength(1);
  });

  it('no valid token, or a malformed request: no record, not counted, no stream log line', async () => {
    const before = await refusedCount(t);
    const rows = (await history(t)).length;
    const wrong = newSecret();
    const anon = [
      await api(t, 'POST', apiPaths.openStream('rf-anon'), { token: wrong, body: { service: 'ssh' } }),
      await api(t, 'POST', apiPaths.openStream('rf-anon'), { token: null, body: { service: 'ssh' } }),
    ];
    expect(anon.map(errorCodeOf)).toEqual(['UNAUTHORIZED', 'UNAUTHORIZED']);
    const upgrade = await dialRelay(t, `wss://localhost:${t.port}${apiPaths.openStream('rf-anon')}/connect?service=ssh`, wrong);
    expect('ws' in upgrade ? 'accepted' : upgrade.body.error.code).toBe('UNAUTHORIZED');
    const mux = await dialRelay(t, `wss://localhost:${t.port}${MUX_SERVICE_PATH}`, null, { protocol: MUX_SUBPROTOCOL });
    expect('ws' in mux ? 'accepted' : mux.body.error.code).toBe('UNAUTHORIZED');
    const malformed = [
      await api(t, 'POST', apiPaths.openStream('rf-bad'), { body: { service: 'ssh', extra: 1 } }),
      await api(t, 'POST', apiPaths.openStream('rf-bad'), { body: { service: '' } }),
      await api(t, 'POST', apiPaths.openStream('rf-bad/..'), { body: { service: 'ssh' } }),
      await api(t, 'POST', apiPaths.openStream('x'.repeat(65)), { body: { service: 'ssh' } }),
    ];
    expect(malformed.map(errorCodeOf)).toEqual(['BAD_REQUEST', 'BAD_REQUEST', 'BAD_REQUEST', 'BAD_REQUEST']);
    expect((await history(t)).length).toBe(rows);
    expect(await refusedCount(t)).toBe(before);
    expect(t.logs.lines().filter((l) => l.msg === 'stream ended' && String(l.device).startsWith('rf-anon'))).toEqual([]);
    expect(t.logs.lines().filter((l) => l.msg === 'stream ended' && (String(l.device).startsWith('rf-bad') || String(l.device).startsWith('xxx')))).toEqual([]);
    for (const secret of [wrong, t.token, scoped]) expect(t.logs.text()).not.toContain(secret);
  });

  it('a request that cannot be published to the device is recorded too (error, INTERNAL)', async () => {
    const publish = vi.spyOn(t.hub.bus, 'publish').mockRejectedValueOnce(new Error('broker gone'));
    try {
      const r = await api(t, 'POST', apiPaths.openStream('rf-online'), { body: { service: 'echo' } });
      expect([r.status, errorCodeOf(r)]).toEqual([500, 'INTERNAL']);
    } finally {
      publish.mockRestore();
    }
    const rec = (await history(t)).find((x) => x.device === 'rf-online' && x.code === 'INTERNAL');
    expect(rec).toMatchObject({ result: 'error', status: 500, service: 'echo', requestedBy: 'default' });
  });

  // Last: the hub's stream requests stop taking requests.
  it('503 SHUTTING_DOWN: recorded', async () => {
    await t.hub.streams.stop();
    const before = await refusedCount(t);
    const r = await api(t, 'POST', apiPaths.openStream('rf-online'), { body: { service: 'vnc' } });
    expect([r.status, errorCodeOf(r)]).toEqual([503, 'SHUTTING_DOWN']);
    const rec = (await history(t)).find((x) => x.device === 'rf-online' && x.service === 'vnc');
    expect(rec).toMatchObject({ result: 'refused', code: 'SHUTTING_DOWN', status: 503, requestedBy: 'default' });
    expect(await refusedCount(t)).toBe(before + 1);
  });
});

describe('limits', () => {
  let t: TestHub;
  let device: MqttClient;
  const first = newSecret();
  const second = newSecret();

  beforeAll(async () => {
    t = await startTestHub({
      // Rates so low that nothing refills during the test: a burst of one each.
      limits: { ...HubLimitsSchema.parse({}), streamRequestsPerTokenPerSecond: 0.001, streamRequestsPerDevicePerSecond: 0.001 },
      serviceTokens: [
        { name: 'first', sha256: hashSecret(first) },
        { name: 'second', sha256: hashSecret(second) },
      ],
    });
    device = await connectDevice(t, 'lim-dev', t.addDevice('lim-dev'));
    await fakeAgent(device, 'lim-dev', () => ({ status: 403, code: 'SERVICE_DENIED', reason: 'not in the allowlist' }));
    await until(() => t.hub.presence.isOnline('lim-dev'), 3000, 'device online');
  });
  afterAll(async () => {
    await device?.endAsync(true);
    await t?.stop();
  });

  it("the device's rate is recorded; a token over its own rate is counted and logged once, with no record", async () => {
    const before = await refusedCount(t);
    const open = (token: string) => api(t, 'POST', apiPaths.openStream('lim-dev'), { token, body: { service: 'ssh' } });
    expect(errorCodeOf(await open(first))).toBe('SERVICE_DENIED'); // the device's answer (takes the device's one request)
    const overDevice = await open(second);
    expect([overDevice.status, errorCodeOf(overDevice)]).toEqual([429, 'LIMIT_EXCEEDED']);
    for (let i = 0; i < 3; i++) {
      const overToken = await open(second);
      expect([overToken.status, errorCodeOf(overToken)]).toEqual([429, 'LIMIT_EXCEEDED']);
    }
    const records = (await history(t)).filter((r) => r.device === 'lim-dev');
    expect(records.map((r) => [r.requestedBy, r.code])).toEqual([
      ['second', 'LIMIT_EXCEEDED'],
      ['first', 'SERVICE_DENIED'],
    ]);
    expect(records[0]).toMatchObject({ result: 'refused', status: 429 });
    expect(await refusedCount(t)).toBe(before + 5);
    const overRate = t.logs.lines().filter((l) => l.msg === 'stream request refused: over its token rate');
    expect(overRate).toHaveLength(1);
    expect(overRate[0]).toMatchObject({ level: PINO_WARN, requestedBy: 'second', code: 'LIMIT_EXCEEDED' });
    expect(t.logs.text()).not.toContain(second);
  });
});

describe('HubRefusals over-rate lines', () => {
  it('one line per token per interval, naming how many were refused since the last', () => {
    let now = 1_000_000;
    const logs = captureLogger();
    let counted = 0;
    const refusals = new HubRefusals({
      streamLog: { add: () => expect.unreachable('an over-rate refusal writes no record') } as unknown as StreamLog,
      log: logs.log,
      overRate: () => counted++,
      overRateLogIntervalMs: 10_000,
      now: () => now,
    });
    const err = new DevstreamsError('LIMIT_EXCEEDED', 'too many');
    for (let i = 0; i < 5; i++) refusals.overRate('a', err);
    refusals.overRate('b', err);
    now += 10_000;
    refusals.overRate('a', err);
    const lines = logs.lines().map((l) => [l.requestedBy, l.refusedSinceLastLine]);
    expect(lines).toEqual([
      ['a', undefined],
      ['b', undefined],
      ['a', 4],
    ]);
    expect(counted).toBe(7);
  });
});

describe('HubRefusals records per token', () => {
  it('records at most recordsPerMinute refusals per token per minute; past that they are counted and summed, as over-rate ones', () => {
    let now = 5_000_000;
    const logs = captureLogger();
    const records: string[] = [];
    let counted = 0;
    const refusals = new HubRefusals({
      streamLog: { add: (r: { requestedBy: string }) => void records.push(r.requestedBy) } as unknown as StreamLog,
      log: logs.log,
      overRate: () => counted++,
      recordsPerMinute: 3,
      now: () => now,
    });
    const err = new DevstreamsError('DEVICE_UNKNOWN', 'no device "x" is registered');
    const ask = (token: string): void => refusals.refused({ device: 'x', service: 'ssh', requestedBy: token }, err);
    for (let i = 0; i < 10; i++) ask('scoped');
    ask('other');
    expect(records).toEqual(['scoped', 'scoped', 'scoped', 'other']);
    expect(counted).toBe(7);
    const summary = logs.lines().filter((l) => l.requestedBy === 'scoped' && l.code === 'DEVICE_UNKNOWN');
    expect(summary).toHaveLength(1); // one line for the seven, at the first
    now += 60_000; // a new minute: records again
    ask('scoped');
    expect(records).toHaveLength(5);
  });
});
