import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planReconcile } from '../../hub/mosquitto-accounts.js';
import { CliProcess } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { Mosquitto, haveMosquitto } from './mosquitto.js';

describe('planReconcile: what the hub changes at the broker', () => {
  it('disables, enables, reports missing accounts, and deletes only device accounts it made', () => {
    const registry = new Map([
      ['d-off', { disabled: true }],
      ['d-on', { disabled: false }],
      ['d-same', { disabled: false }],
      ['d-missing', { disabled: false }],
    ]);
    const clients = [
      { username: 'd-off', disabled: false, roles: ['devstreams-device-d-off'] },
      { username: 'd-on', disabled: true, roles: ['devstreams-device-d-on'] },
      { username: 'd-same', disabled: false, roles: ['devstreams-device-d-same'] },
      { username: 'd-gone', disabled: false, roles: ['devstreams-device-d-gone'] },
      { username: 'admin', disabled: false, roles: ['admin', 'devstreams-hub'] },
      { username: 'other-app', disabled: false, roles: ['devstreams-device-d-gone'] },
    ];
    expect(planReconcile(registry, clients)).toEqual({ disable: ['d-off'], enable: ['d-on'], remove: ['d-gone'], missing: ['d-missing'] });
  });
});

/**
 * The hub brings Mosquitto's device accounts in step with the registry (hub/mosquitto-accounts.ts):
 * at start, for changes made while it was down, and after each registry reload.
 */
describe.skipIf(!haveMosquitto)('registry and broker accounts reconciled (Mosquitto dynsec)', () => {
  const broker = new Mosquitto();
  const stack = new Stack({ broker });
  const raw: MqttClient[] = [];
  const registryFile = (): string => join(stack.dir, 'registry.json');
  const keyOf = (id: string): string => readFileSync(join(stack.dir, 'devices', `${id}.key`), 'utf8').trim();
  const connectAs = (id: string): Promise<MqttClient> => broker.connectRaw({ user: id, password: keyOf(id), ca: stack.caFile, track: raw });
  const REFUSED = /Bad User Name or Password|Not authorized/i;

  /** Rewrites registry.json the way a copy from elsewhere lands: a whole new file, renamed into place. */
  function editRegistry(change: (devices: Record<string, { disabled: boolean }>) => void): void {
    const reg = JSON.parse(readFileSync(registryFile(), 'utf8')) as { devices: Record<string, { disabled: boolean }> };
    change(reg.devices);
    writeFileSync(`${registryFile()}.tmp`, JSON.stringify(reg), { mode: 0o600 });
    renameSync(`${registryFile()}.tmp`, registryFile());
  }

  beforeAll(async () => {
    await stack.start([
      { id: 'pi-kept', allow: ['echo'] },
      { id: 'pi-disabled', allow: ['echo'] },
      { id: 'pi-removed', allow: ['echo'], start: false },
    ]);
  });
  afterAll(async () => {
    for (const c of raw) c.end(true);
    await stack.stop();
  });

  it('at start: a device disabled or removed in the registry while the hub was down is refused by the broker', async () => {
    await stack.hub.stop();
    editRegistry((d) => {
      d['pi-disabled']!.disabled = true;
      delete d['pi-removed'];
      // A registered device the broker has no account for (the hub cannot create it: it holds no keys).
      d['pi-ghost'] = JSON.parse(JSON.stringify(d['pi-kept']));
    });
    // With the hub down nothing is pushed: the broker still lets the removed device in.
    (await connectAs('pi-removed')).end(true);

    stack.hub = new CliProcess(['hub', '--config', join(stack.dir, 'hub.yaml')]);
    await stack.hub.waitForLog('hub listening');
    const changed = await stack.hub.waitForLog('broker accounts brought in step with the registry');
    expect(changed).toMatchObject({ disabled: ['pi-disabled'], enabled: [], removed: ['pi-removed'] });
    expect(await stack.hub.waitForLog('registered devices without a broker account (the hub holds no device keys): run `devstreams hub rotate-key ID` for each')).toMatchObject({
      devices: ['pi-ghost'],
      count: 1,
    });

    await expect(connectAs('pi-disabled')).rejects.toThrow(REFUSED);
    await expect(connectAs('pi-removed')).rejects.toThrow(REFUSED);
    // The running agent of the disabled device was disconnected and is offline; the other one is untouched.
    await stack.waitForDevice('pi-disabled', false);
    await stack.agents.get('pi-disabled')!.waitForLine((l) => /not authorized|bad user name/i.test(l));
    await stack.waitForDevice('pi-kept', true);
    const client = stack.client();
    try {
      const s = await client.openStream('pi-kept', 'echo');
      s.destroy();
    } finally {
      client.close();
    }
  });

  it('while running: a registry file copied in with a device disabled (no admin command) disables it at the broker', async () => {
    const before = stack.hub.logs('broker accounts reconciled').length;
    editRegistry((d) => {
      d['pi-kept']!.disabled = true;
    });
    await stack.hub.waitForLine((l) => stack.hub.logs('broker accounts reconciled').length > before && l.includes('broker accounts reconciled'));
    expect(stack.hub.logs('broker accounts brought in step with the registry').at(-1)).toMatchObject({ disabled: ['pi-kept'] });
    await expect(connectAs('pi-kept')).rejects.toThrow(REFUSED);
    await stack.waitForDevice('pi-kept', false);
    // And back: enabled in the file, enabled at the broker.
    editRegistry((d) => {
      d['pi-kept']!.disabled = false;
    });
    await stack.hub.waitForLine(() => stack.hub.logs('broker accounts brought in step with the registry').some((r) => (r.enabled as string[]).includes('pi-kept')));
    await stack.waitForDevice('pi-kept', true, 30_000); // its agent is let back in (after its reconnect backoff)
  });
});
