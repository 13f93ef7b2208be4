import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHubConfig } from '../../hub/config.js';
import { MqttControlBus } from '../../hub/mqtt-control-bus.js';
import { silentLogger, topics } from '../../protocol/index.js';
import type { DevstreamsClient } from '../../service/index.js';
import { runCli } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { refusalOf, roundTrip } from '../helpers/streams.js';
import { Mosquitto, haveMosquitto } from './mosquitto.js';

/**
 * What is particular to an external broker: the agent config add-device writes, the broker's own
 * authentication and topic isolation, and the account commands. The main stream paths (echo, big
 * transfers, parallel streams, ssh, every refusal) run against Mosquitto in test/e2e
 * (describeEachBroker).
 */
describe.skipIf(!haveMosquitto)('external broker: Mosquitto with the dynamic security plugin', () => {
  const broker = new Mosquitto();
  const stack = new Stack({ broker });
  let client: DevstreamsClient;
  const raw: MqttClient[] = [];

  beforeAll(async () => {
    await stack.start([
      { id: 'pi-a', allow: ['echo'] },
      { id: 'pi-b', allow: ['echo'] },
      { id: 'pi-mallory', allow: ['echo'], start: false },
    ]);
    client = stack.client();
  });
  afterAll(async () => {
    for (const c of raw) c.end(true);
    client?.close();
    await stack.stop();
  });

  const connectRaw = (user: string, password: string, clientId = user): Promise<MqttClient> =>
    broker.connectRaw({ user, password, clientId, ca: stack.caFile, track: raw });
  const keyOf = (id: string): string => readFileSync(join(stack.dir, 'devices', `${id}.key`), 'utf8').trim();

  it('add-device wrote an agent config for the broker: its URL, auth key, the hub as relay host', () => {
    const cfg = readFileSync(stack.agentConfig('pi-a'), 'utf8');
    expect(cfg).toContain(`url: "${broker.url}"`);
    expect(cfg).toMatch(/auth: key/);
    expect(cfg).toContain('relayHosts: ["localhost"]');
    expect(stack.hub.lines.some((l) => l.includes('"embedded broker') || l.includes('mqtts listening'))).toBe(false);
  });

  it('the broker refuses a wrong key, and a device id used as someone else\'s client id', async () => {
    await expect(connectRaw('pi-mallory', 'x'.repeat(43))).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
    await expect(connectRaw('pi-mallory', keyOf('pi-mallory'), 'pi-b')).rejects.toThrow(/Identifier rejected|Not authorized|Bad User/i);
  });

  it("the hub's own account refused (a wrong password): the error says where that account is set", async () => {
    const mqttConfig = loadHubConfig(join(stack.dir, 'hub.yaml')).config.mqtt!;
    const { passwordFile: _unused, ...rest } = mqttConfig;
    const bus = new MqttControlBus({ config: { ...rest, password: 'not-the-password' }, clientId: 'devstreams-hub-wrong', log: silentLogger });
    try {
      await expect(bus.start()).rejects.toThrow(/^mqtt\.url: cannot connect to the broker as "[^"]+": broker refused the connection: (not authorized|bad user name or password) \(check mqtt\.username and mqtt\.passwordFile or mqtt\.password in hub\.yaml/);
    } finally {
      await bus.stop();
    }
  });

  it("isolation: a device cannot subscribe to another's topics, to # or the broker's, nor publish another's status, responses, requests or broker commands", async () => {
    const watcher = await connectRaw('admin', broker.adminPassword, 'test-watcher');
    const seen: string[] = [];
    watcher.on('message', (t, p) => seen.push(`${t} ${p.toString()}`));
    await watcher.subscribeAsync('devstreams/v1/devices/#', { qos: 1 });

    const m = await connectRaw('pi-mallory', keyOf('pi-mallory'));
    // SUBACK 0x80 for each refused filter (mqtt.js rejects the call then), a grant for its own request topic.
    const grant = (filter: string): Promise<number> =>
      m.subscribeAsync(filter, { qos: 1 }).then((g) => g[0]!.qos, () => 128);
    const refused = [
      topics.streamRequest('pi-b'), topics.status('pi-b'), topics.streamResponse('pi-b'), `${topics.streamResponse('pi-b')}/+`,
      '#', '+/#', 'devstreams/v1/devices/+/streams/request', 'devstreams/v1/devices/+/status', topics.deviceTree('pi-b'),
      // its own tree and status (only its request topic, literally), and the broker's own topics
      topics.deviceTree('pi-mallory'), topics.status('pi-mallory'), '$CONTROL/#', '$CONTROL/dynamic-security/v1/response', '$SYS/#',
    ];
    for (const f of refused) {
      expect(await grant(f), f).toBe(128);
    }
    expect(await grant(topics.streamRequest('pi-mallory'))).toBe(1);

    await m.publishAsync(topics.status('pi-b'), JSON.stringify({ v: 1, online: false }), { qos: 1, retain: true });
    await m.publishAsync(topics.streamResponse('pi-b', 'hub-x'), '{"forged":true}', { qos: 1 });
    await m.publishAsync(topics.streamRequest('pi-b'), '{"forged":true}', { qos: 1 });
    // Commands to the dynamic security plugin: make an account, take the admin role, change its own password.
    const forged = [
      { command: 'createClient', username: 'evil', password: 'evil-password-0123456789' },
      { command: 'addClientRole', username: 'pi-mallory', rolename: 'admin' },
      { command: 'setClientPassword', username: 'pi-mallory', password: 'evil-password-0123456789' },
    ];
    await m.publishAsync('$CONTROL/dynamic-security/v1', JSON.stringify({ commands: forged }), { qos: 1 });
    // The positive control, on the same connection: its own response topic is allowed and arrives after the forgeries.
    await m.publishAsync(topics.streamResponse('pi-mallory', 'marker'), 'marker', { qos: 1 });
    const deadline = Date.now() + 10_000;
    while (!seen.some((s) => s.includes('marker')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(seen.some((s) => s.includes('marker'))).toBe(true);
    expect(seen.filter((s) => s.includes('pi-b/') && !s.includes('"online":true'))).toEqual([]);
    // None of the broker commands ran: no new account, mallory's own key still works and it holds no admin rights.
    await expect(connectRaw('evil', 'evil-password-0123456789')).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
    m.end(true);
    const again = await connectRaw('pi-mallory', keyOf('pi-mallory'));
    expect(await again.subscribeAsync('$CONTROL/dynamic-security/v1/response', { qos: 1 }).then((g) => g[0]!.qos, () => 128)).toBe(128);
    again.end(true);
    // The hub still sees pi-b online and streams to it still work.
    expect((await client.getDevice('pi-b')).online).toBe(true);
    const s = await client.openStream('pi-b', 'echo');
    expect((await roundTrip(s, Buffer.from('still mine'))).toString()).toBe('still mine');
  });

  it('disable-device disconnects the device at the broker and refuses it; enable-device lets it back', async () => {
    const conf = join(stack.dir, 'hub.yaml');
    const r = await runCli(['hub', 'disable-device', 'pi-b', '--config', conf]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/broker account "pi-b" disabled/);
    await stack.waitForDevice('pi-b', false);
    expect((await refusalOf(client.openStream('pi-b', 'echo'))).code).toBe('DEVICE_OFFLINE');
    const e = await runCli(['hub', 'enable-device', 'pi-b', '--config', conf]);
    expect(e.code, e.stderr).toBe(0);
    await stack.waitForDevice('pi-b', true, 30_000); // the agent's reconnect backoff
  });

  it('rotate-key of a connected device: the output says the previous key stops at the broker now, the hub marks it offline at once, and a reload brings it back', async () => {
    const conf = join(stack.dir, 'hub.yaml');
    const r = await runCli(['hub', 'rotate-key', 'pi-a', '--config', conf]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('the previous key stops working at the broker now');
    expect(r.stdout).toContain('reload its agent now');
    expect(r.stdout).not.toMatch(/still works|restart/);
    // Mosquitto drops it without its will; the hub published the offline status, so a stream is
    // refused at once instead of waiting for the device's answer.
    await stack.waitForDevice('pi-a', false, 5_000);
    expect((await refusalOf(client.openStream('pi-a', 'echo'))).code).toBe('DEVICE_OFFLINE');
    // The agent's keyFile is DIR/devices/pi-a.key, which rotate-key rewrote: a reload is enough.
    stack.agents.get('pi-a')!.child.kill('SIGHUP');
    await stack.waitForDevice('pi-a', true, 30_000); // the agent's reconnect backoff
  });

  it('rotate-key moves the broker password to the new key; remove-device deletes the account', async () => {
    const conf = join(stack.dir, 'hub.yaml');
    const old = keyOf('pi-mallory');
    const r = await runCli(['hub', 'rotate-key', 'pi-mallory', '--config', conf]);
    expect(r.code, r.stderr).toBe(0);
    await expect(connectRaw('pi-mallory', old)).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
    const fresh = keyOf('pi-mallory');
    (await connectRaw('pi-mallory', fresh)).end(true);
    const rm = await runCli(['hub', 'remove-device', 'pi-mallory', '--config', conf]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toMatch(/broker account "pi-mallory" deleted/);
    await expect(connectRaw('pi-mallory', fresh)).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
  });
});
