import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../hub/hub.js';
import { loadHubConfig } from '../../hub/config.js';
import { PROTOCOL_VERSION, topics } from '../../protocol/index.js';
import { captureLogger, connectDevice, startTestHub, until, type TestHub } from './helpers.js';

/** A second hub on the first one's folder (the first stopped): a restart. */
async function restart(t: TestHub): Promise<Hub> {
  await t.hub.stop();
  const hub = new Hub({ config: loadHubConfig(join(t.dir, 'hub.yaml')).config, log: captureLogger().log });
  await hub.start();
  return hub;
}

describe('what the hub last knew of each device survives its restart (hub/presence-store.ts)', () => {
  let t: TestHub | undefined;
  let again: Hub | undefined;
  afterEach(async () => {
    await again?.stop();
    again = undefined;
    await t?.stop();
  });

  it('a device seen before the restart is offline after it, with its last-seen time, version and last error', async () => {
    t = await startTestHub();
    const device = await connectDevice(t, 'ps-1', t.addDevice('ps-1'), { online: false });
    const lastError = { at: 1_700_000_000_000, code: 'TARGET_UNREACHABLE', message: 'cannot connect to 127.0.0.1:22' };
    await device.publishAsync(topics.status('ps-1'), JSON.stringify({ v: PROTOCOL_VERSION, online: true, agentVersion: '9.8.7', openStreams: 0, at: 1_700_000_000_500, lastError }), { qos: 1, retain: true });
    await until(() => t!.hub.presence.isOnline('ps-1'), 5000, 'online');
    const beforeStop = Date.now();
    await device.endAsync(true);
    again = await restart(t);
    const info = again.presence.info('ps-1', true);
    expect(info).toMatchObject({ online: false, agentVersion: '9.8.7', statusAt: 1_700_000_000_500, lastError, openStreams: 0 });
    expect(info.lastSeen).toBeGreaterThanOrEqual(beforeStop - 5000);
    // A device never seen stays "never".
    t.addDevice('ps-never');
    expect(again.presence.info('ps-never').lastSeen).toBeNull();
  });

  it('an unreadable file is logged and left alone; the hub starts without it', async () => {
    t = await startTestHub();
    await t.hub.stop();
    writeFileSync(join(t.dir, 'presence.json'), '{"devices": {"x": {"lastSeen": "yesterday"}}}');
    const logs = captureLogger();
    again = new Hub({ config: loadHubConfig(join(t.dir, 'hub.yaml')).config, log: logs.log });
    await again.start();
    expect(logs.lines().find((l) => l.msg === 'devices last seen not loaded; the hub starts without them')?.err).toMatch(/presence\.json/);
    expect(again.presence.get('x')).toBeUndefined();
    await again.stop();
    // Nothing changed, so nothing was written over it: it is replaced only by news of a device.
    expect(readFileSync(join(t.dir, 'presence.json'), 'utf8')).toContain('yesterday');
    again = undefined;
  });
});
