import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apiPaths,
  deviceSigningKey,
  mintDeviceToken,
  newSecret,
  parseDeviceToken,
  staticKeySlot,
  verifyDeviceToken,
} from '../../protocol/index.js';
import { removeDevice, revokeKey, rotateKey, setDeviceDisabled } from '../../hub/device-admin.js';
import { readRegistryFile } from '../../hub/registry.js';
import { api, connectDevice, startTestHub, type TestHub } from '../hub/helpers.js';

/**
 * Attacks on device identity: forged, expired, replayed-for-another-device, over-long and tampered
 * device tokens; static keys where the hub forbids them; disabled, removed and rotated-out devices.
 */

const now = Date.now();
const nowSec = Math.floor(now / 1000);
const opts = { nowMs: now, maxTtlSec: 3600 };

describe('device token format (protocol/device-token.ts)', () => {
  const key = newSecret();
  const sk = deviceSigningKey(key);

  it('round-trips and never contains the key or the signing key', () => {
    const t = mintDeviceToken('pi.kitchen', key, nowSec + 600);
    expect(t).toMatch(/^dsas1\.pi\.kitchen\.\d+\.[A-Za-z0-9_-]{43}$/);
    expect(t).not.toContain(key);
    expect(t).not.toContain(sk);
    expect(parseDeviceToken(t)).toMatchObject({ deviceId: 'pi.kitchen', expiresAtSec: nowSec + 600 });
    expect(verifyDeviceToken(t, 'pi.kitchen', [sk], opts)).toEqual({ ok: true, slot: 0 });
    expect(verifyDeviceToken(t, 'pi.kitchen', [undefined, sk], opts)).toEqual({ ok: true, slot: 1 });
  });

  it('refuses a token for another device, expired, too far ahead, tampered, or signed with another key', () => {
    const t = mintDeviceToken('a', key, nowSec + 600);
    expect(verifyDeviceToken(t, 'b', [sk], opts)).toEqual({ ok: false, why: 'wrong device' });
    expect(verifyDeviceToken(mintDeviceToken('a', key, nowSec - 120), 'a', [sk], opts)).toEqual({ ok: false, why: 'expired' });
    expect(verifyDeviceToken(mintDeviceToken('a', key, nowSec + 7200), 'a', [sk], opts)).toEqual({ ok: false, why: 'expiry too far ahead' });
    // A later expiry with the old signature: the signature covers the expiry.
    const [, , , sig] = t.split('.');
    expect(verifyDeviceToken(`dsas1.a.${nowSec + 900}.${sig}`, 'a', [sk], opts)).toEqual({ ok: false, why: 'bad signature' });
    expect(verifyDeviceToken(mintDeviceToken('a', newSecret(), nowSec + 600), 'a', [sk], opts)).toEqual({ ok: false, why: 'bad signature' });
    for (const bad of ['dsas1.', 'dsas1.a.1.x', `dsas1.a.${nowSec}.${'A'.repeat(43)}extra`, `dsas1.../..${nowSec}.${'A'.repeat(43)}`, 'x'.repeat(5000)]) {
      expect(verifyDeviceToken(bad, 'a', [sk], opts).ok, bad.slice(0, 40)).toBe(false);
    }
  });

  it('a static key matches its own slot only; the signing key itself is not a key', () => {
    const other = newSecret();
    expect(staticKeySlot(key, [deviceSigningKey(other), sk])).toBe(1);
    expect(staticKeySlot(other, [undefined, sk])).toBe(-1);
    expect(staticKeySlot(sk, [sk])).toBe(-1); // a stolen registry's signing key is refused as a static key
  });
});

describe('broker: device credentials at MQTT CONNECT', () => {
  let t: TestHub;
  let noStatic: TestHub;
  beforeAll(async () => {
    t = await startTestHub();
    noStatic = await startTestHub({ deviceAuth: { allowStaticKeys: false, maxTokenTtlSeconds: 3600 } });
  });
  afterAll(async () => {
    await t?.stop();
    await noStatic?.stop();
  });

  const token = (id: string, key: string, ttl = 600): string => mintDeviceToken(id, key, Math.floor(Date.now() / 1000) + ttl);
  const refused = async (hub: TestHub, id: string, password: string): Promise<void> => {
    await expect(connectDevice(hub, id, password, { online: false })).rejects.toThrow(/Bad username or password|Not authorized/);
  };

  it('accepts a fresh token and the static key; refuses expired, forged, other-device and over-long tokens', async () => {
    const key = t.addDevice('tok1');
    const other = t.addDevice('tok2');
    for (const pw of [token('tok1', key), key]) {
      const c = await connectDevice(t, 'tok1', pw, { online: false });
      await c.endAsync();
    }
    await refused(t, 'tok1', token('tok1', key, -120));
    await refused(t, 'tok1', token('tok1', key, 30 * 86_400)); // default maxTokenTtlSeconds is one day
    await refused(t, 'tok1', token('tok1', other)); // other device's key
    await refused(t, 'tok1', token('tok2', other)); // other device's valid token, presented as tok1
    await refused(t, 'tok1', deviceSigningKey(key)); // what a stolen registry holds is not a key
    expect(t.logs.text()).not.toContain(key);
  });

  it('refuses the static key when deviceAuth.allowStaticKeys is false, but accepts a token', async () => {
    const key = noStatic.addDevice('strict');
    await refused(noStatic, 'strict', key);
    const c = await connectDevice(noStatic, 'strict', token('strict', key), { online: false });
    await c.endAsync();
    expect(noStatic.logs.text()).toContain('static device keys are not accepted');
  });
});

const closedByHub = (c: MqttClient): Promise<void> => new Promise((resolve) => c.once('close', () => resolve()));

describe('key rotation, disable, enable, remove on a running hub', () => {
  let t: TestHub;
  const configFile = (): string => join(t.dir, 'hub.yaml');
  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => t?.stop());

  

  it('disable-device disconnects the device at once and refuses it; enable lets it back; B is unaffected', async () => {
    const key = t.addDevice('victim');
    const bystanderKey = t.addDevice('bystander');
    const c = await connectDevice(t, 'victim', mintDeviceToken('victim', key, Math.floor(Date.now() / 1000) + 600));
    const b = await connectDevice(t, 'bystander', bystanderKey);
    const gone = closedByHub(c);
    c.options.reconnectPeriod = 0;
    setDeviceDisabled({ configFile: configFile(), deviceId: 'victim', disabled: true });
    await gone; // the registry watch reloads the file and the broker kicks the session
    expect(t.logs.lines().some((l) => l.msg === 'device disconnected by the hub' && l.device === 'victim' && l.why === 'device disabled')).toBe(true);
    await expect(connectDevice(t, 'victim', key, { online: false })).rejects.toThrow(/Not authorized/);
    expect(b.connected).toBe(true);
    // The API says disabled, not merely offline; a stream request says so too (the code stays DEVICE_OFFLINE).
    expect((await api(t, 'GET', apiPaths.device('victim'))).body).toMatchObject({ id: 'victim', online: false, disabled: true });
    expect((await api(t, 'GET', apiPaths.devices)).body.devices.find((d: { id: string }) => d.id === 'victim')).toMatchObject({ disabled: true });
    expect((await api(t, 'GET', apiPaths.device('bystander'))).body.disabled).toBeUndefined();
    const refused = await api(t, 'POST', apiPaths.openStream('victim'), { body: { service: 'ssh' } });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('DEVICE_OFFLINE');
    expect(refused.body.error.reason).toContain('disabled');
    setDeviceDisabled({ configFile: configFile(), deviceId: 'victim', disabled: false });
    const again = await connectDevice(t, 'victim', key, { online: false });
    await again.endAsync();
    await b.endAsync();
  });

  it('rotation: both slots work during the switch; revoking the old one disconnects only its sessions', async () => {
    const oldKey = t.addDevice('rot');
    const viaOld = await connectDevice(t, 'rot', oldKey, { online: false });
    const r = rotateKey({ configFile: configFile(), deviceId: 'rot', slot: 'secondary' });
    expect(r.keyFile).toBe(join(t.dir, 'devices', 'rot.key'));
    const newKey = readFileSync(r.keyFile!, 'utf8');
    expect(viaOld.connected).toBe(true); // the primary slot did not change
    // Both keys are valid during the switch (a second connection with the same client id replaces the first).
    const oldReplaced = closedByHub(viaOld);
    const viaNew = await connectDevice(t, 'rot', mintDeviceToken('rot', newKey, Math.floor(Date.now() / 1000) + 600), { online: false });
    await oldReplaced;
    const newReplaced = closedByHub(viaNew);
    const oldAgain = await connectDevice(t, 'rot', oldKey, { online: false });
    await newReplaced;
    const kicked = closedByHub(oldAgain);
    oldAgain.options.reconnectPeriod = 0;
    revokeKey({ configFile: configFile(), deviceId: 'rot', slot: 'primary' });
    await kicked;
    expect(t.logs.lines().some((l) => l.msg === 'device disconnected by the hub' && l.device === 'rot' && String(l.why).includes('primary'))).toBe(true);
    await expect(connectDevice(t, 'rot', oldKey, { online: false })).rejects.toThrow(/Bad username or password/);
    const ok = await connectDevice(t, 'rot', newKey, { online: false });
    await ok.endAsync();
    // The last key cannot be revoked (that would be disable-device).
    expect(() => revokeKey({ configFile: configFile(), deviceId: 'rot', slot: 'secondary' })).toThrow(/only key/);
    const entry = readRegistryFile(join(t.dir, 'registry.json')).devices.rot!;
    expect(Object.keys(entry.keys)).toEqual(['secondary']);
    expect(JSON.stringify(entry)).not.toContain(newKey);
  });

  it('remove-device disconnects and forgets the device', async () => {
    const key = t.addDevice('gone');
    const c = await connectDevice(t, 'gone', key, { online: false });
    const kicked = closedByHub(c);
    c.options.reconnectPeriod = 0;
    removeDevice({ configFile: configFile(), deviceId: 'gone' });
    await kicked;
    await expect(connectDevice(t, 'gone', key, { online: false })).rejects.toThrow(/Bad username or password/);
    expect(t.hub.registry.has('gone')).toBe(false);
  });
});
