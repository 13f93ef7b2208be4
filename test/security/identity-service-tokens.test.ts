import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamListSchema, apiPaths, silentLogger, type StreamRecord, type StreamRequest } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/client.js';
import { runForward } from '../../service/forward-command.js';
import { globMatches } from '../../hub/service-tokens.js';
import { createToken, listTokens, revokeToken } from '../../hub/token-admin.js';
import { api, connectDevice, fakeAgent, startTestHub, until, type TestHub } from '../hub/helpers.js';

/**
 * Attacks with a valid but limited service token: reaching a device or a service outside its scope
 * (403 FORBIDDEN before the device is asked: the agent receives nothing), probing which devices
 * exist, and using a token after it was revoked.
 */

let t: TestHub;
const devices: MqttClient[] = [];
const seen = new Map<string, StreamRequest[]>();
const configFile = (): string => join(t.dir, 'hub.yaml');

beforeAll(async () => {
  t = await startTestHub();
  for (const id of ['plant-1', 'plant-2', 'office-1']) {
    const c = await connectDevice(t, id, t.addDevice(id));
    devices.push(c);
    seen.set(id, await fakeAgent(c, id, () => ({ status: 200, code: 'OK', reason: 'ok' })));
  }
  await until(() => ['plant-1', 'plant-2', 'office-1'].every((d) => t.hub.presence.isOnline(d)), 5000, 'devices online');
});
afterAll(async () => {
  await Promise.all(devices.map((c) => c.endAsync(true)));
  await t?.stop();
});

describe('service token scopes', () => {
  it('device globs: * and ? only, anchored', () => {
    expect(globMatches('plant-*', 'plant-1')).toBe(true);
    expect(globMatches('plant-?', 'plant-12')).toBe(false);
    expect(globMatches('plant.1', 'plantx1')).toBe(false); // "." is literal
    expect(globMatches('*', 'anything')).toBe(true);
  });

  it('403 FORBIDDEN for a device or service outside the scope, and the device never sees the request', async () => {
    const { token } = createToken({ configFile: configFile(), name: 'plant-ssh', devices: 'plant-*', services: 'ssh' });
    const before = [...seen.values()].reduce((n, s) => n + s.length, 0);
    const office = await api(t, 'POST', apiPaths.openStream('office-1'), { token, body: { service: 'ssh' } });
    expect(office.status).toBe(403);
    expect(office.body.error.code).toBe('FORBIDDEN');
    const web = await api(t, 'POST', apiPaths.openStream('plant-1'), { token, body: { service: 'web' } });
    expect(web.status).toBe(403);
    expect(web.body.error.code).toBe('FORBIDDEN');
    // The scope matches the requested service string exactly: "22" is not "ssh".
    expect((await api(t, 'POST', apiPaths.openStream('plant-1'), { token, body: { service: '22' } })).status).toBe(403);
    // An unregistered id outside the scope is 403 too, not 404: the token learns nothing about it.
    expect((await api(t, 'POST', apiPaths.openStream('secret-lab'), { token, body: { service: 'ssh' } })).body.error.code).toBe('FORBIDDEN');
    expect([...seen.values()].reduce((n, s) => n + s.length, 0)).toBe(before);

    const ok = await api(t, 'POST', apiPaths.openStream('plant-2'), { token, body: { service: 'ssh' } });
    expect(ok.status).toBe(201);
    expect(seen.get('plant-2')!.map((r) => r.service)).toEqual(['ssh']);
  });

  it('GET a device with ?service= says whether the token may use the service; forward ends on it before listening', async () => {
    const { token } = createToken({ configFile: configFile(), name: 'plant-ssh-q', devices: 'plant-*', services: 'ssh' });
    const ok = await api(t, 'GET', apiPaths.device('plant-1', { service: 'ssh' }), { token });
    expect([ok.status, ok.body.id]).toEqual([200, 'plant-1']);
    const web = await api(t, 'GET', apiPaths.device('plant-1', { service: 'web' }), { token });
    expect([web.status, web.body.error.code, web.body.error.reason]).toEqual([403, 'FORBIDDEN', 'service token "plant-ssh-q" may not use service "web"']);
    // Outside the device scope it stays unknown, whatever the service.
    expect((await api(t, 'GET', apiPaths.device('office-1', { service: 'ssh' }), { token })).body.error.code).toBe('DEVICE_UNKNOWN');
    expect((await api(t, 'GET', `${apiPaths.device('plant-1')}?servce=ssh`, { token })).body.error.code).toBe('BAD_REQUEST');
    expect((await api(t, 'GET', `${apiPaths.device('plant-1')}?service=ssh&service=web`, { token })).body.error.code).toBe('BAD_REQUEST');

    const stderr: string[] = [];
    const client = new DevstreamsClient({ hub: `https://localhost:${t.port}`, token, ca: t.ca });
    const ctx = { client, log: silentLogger, out: () => expect.unreachable('forward listened'), err: (l: string) => void stderr.push(l) };
    try {
      expect(await runForward(ctx, 'plant-1', 'web', { host: '127.0.0.1', port: 0 }, undefined, new Promise(() => undefined))).toBe(1);
    } finally {
      client.close();
    }
    expect(stderr).toEqual(['devstreams: plant-1/web refused: 403 FORBIDDEN: service token "plant-ssh-q" may not use service "web"']);
    expect((await api(t, 'GET', apiPaths.streams, { token: t.token })).body.streams.some((r: { requestedBy?: string }) => r.requestedBy === 'plant-ssh-q')).toBe(false);
  });

  it('the device list shows only devices in scope', async () => {
    const { token } = createToken({ configFile: configFile(), name: 'office', devices: 'office-*' });
    const r = await api(t, 'GET', apiPaths.devices, { token });
    expect(r.status).toBe(200);
    expect(r.body.devices.map((d: { id: string }) => d.id)).toEqual(['office-1']);
  });

  it('a revoked token gets 401 at once; the file holds digests only; list shows no secrets', async () => {
    const { token } = createToken({ configFile: configFile(), name: 'temp' });
    expect((await api(t, 'GET', apiPaths.devices, { token })).status).toBe(200);
    const stored = readFileSync(join(t.dir, 'tokens.json'), 'utf8');
    expect(stored).not.toContain(token);
    expect(JSON.stringify(listTokens({ configFile: configFile() }))).not.toContain(token);
    expect(listTokens({ configFile: configFile() }).map((x) => x.name)).toEqual(['default', 'office', 'plant-ssh', 'plant-ssh-q', 'temp']);
    revokeToken({ configFile: configFile(), name: 'temp' });
    const after = await api(t, 'GET', apiPaths.devices, { token });
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('UNAUTHORIZED');
    expect(t.logs.text()).not.toContain(token);
  });

  it('refuses duplicate names, bad names and bad scopes, changing nothing', () => {
    const before = readFileSync(join(t.dir, 'tokens.json'), 'utf8');
    expect(() => createToken({ configFile: configFile(), name: 'default' })).toThrow(/exists/);
    expect(() => createToken({ configFile: configFile(), name: '../x' })).toThrow(/token name/);
    expect(() => createToken({ configFile: configFile(), name: 'x', devices: 'a/b' })).toThrow(/--devices/);
    expect(() => createToken({ configFile: configFile(), name: 'x', services: ',' })).toThrow(/--services/);
    expect(() => revokeToken({ configFile: configFile(), name: 'nope' })).toThrow(/no token/);
    expect(readFileSync(join(t.dir, 'tokens.json'), 'utf8')).toBe(before);
  });
});

describe('the stream history seen with a scoped token', () => {
  /** A finished stream's record, as the relay writes it. */
  const record = (device: string, service: string, requestedBy: string, n: number): StreamRecord => ({
    streamId: `scoped-history-${n}`, device, service, requestedBy, result: 'ok', status: 200, code: 'OK', reason: '',
    closedBy: 'service', openedAt: Date.now(), closedAt: Date.now(), durationMs: 1, bytesToDevice: 0, bytesFromDevice: 0,
  });

  it('?limit=N counts only records in scope, and streams to services outside the scope are hidden', async () => {
    const { token } = createToken({ configFile: configFile(), name: 'history-plant-ssh', devices: 'plant-?', services: 'ssh' });
    let n = 0;
    // Oldest first: three records the token may see, then many newer ones it may not.
    for (let i = 0; i < 3; i++) t.hub.streamLog.add(record('plant-1', 'ssh', 'default', n++));
    for (let i = 0; i < 20; i++) {
      t.hub.streamLog.add(record('office-1', 'ssh', 'default', n++)); // device outside the scope
      t.hub.streamLog.add(record('plant-2', 'web', 'default', n++)); // service outside the scope
      t.hub.streamLog.add(record('plant-12', 'ssh', 'default', n++)); // "plant-?" is one character
    }
    const r = await api(t, 'GET', `${apiPaths.streams}?limit=2`, { token });
    expect(r.status).toBe(200);
    const streams = StreamListSchema.parse(r.body).streams;
    expect(streams.map((s) => [s.streamId, s.device, s.service])).toEqual([
      ['scoped-history-2', 'plant-1', 'ssh'],
      ['scoped-history-1', 'plant-1', 'ssh'],
    ]);
    const all = StreamListSchema.parse((await api(t, 'GET', `${apiPaths.streams}?limit=1000`, { token })).body).streams;
    expect(all.every((s) => /^plant-\d$/.test(s.device) && s.service === 'ssh')).toBe(true);
    // The full-scope token still sees everything.
    expect((await api(t, 'GET', `${apiPaths.streams}?limit=4`, { token: t.token })).body.streams.map((s: StreamRecord) => s.device)).toEqual([
      'plant-12', 'plant-2', 'office-1', 'plant-12',
    ]);
  });
});
