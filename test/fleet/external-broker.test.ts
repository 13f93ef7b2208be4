import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../protocol/index.js';
import type { DevstreamsClient } from '../../service/index.js';
import { CLI, runCli } from '../helpers/proc.js';
import { haveSshd, startSshd, type Sshd } from '../helpers/sshd.js';
import { Stack } from '../helpers/stack.js';
import { closedPort, digestTarget, type Target } from '../helpers/targets.js';
import { refusalOf, roundTrip, sha256 } from '../helpers/streams.js';
import { Mosquitto, haveMosquitto } from './mosquitto.js';

const exec = promisify(execFile);
const sha = sha256;

/** The hub, its agents and devstreams' main paths on Debian's Mosquitto (hub config `mqtt`). */
describe.skipIf(!haveMosquitto)('external broker: Mosquitto with the dynamic security plugin', () => {
  const broker = new Mosquitto();
  const stack = new Stack({ broker });
  let digest: Target;
  let sshd: Sshd | undefined;
  let client: DevstreamsClient;
  const raw: MqttClient[] = [];

  beforeAll(async () => {
    digest = await digestTarget();
    if (haveSshd) sshd = await startSshd();
    const dead = await closedPort();
    await stack.start([
      { id: 'pi-a', allow: ['echo', `digest=${digest.port}`, `dead=${dead}`, ...(sshd ? [`ssh=${sshd.port}`] : [])] },
      { id: 'pi-b', allow: ['echo'] },
      { id: 'pi-off', allow: ['echo'], start: false },
      { id: 'pi-mallory', allow: ['echo'], start: false },
    ]);
    client = stack.client();
  });
  afterAll(async () => {
    for (const c of raw) c.end(true);
    client?.close();
    await stack.stop();
    await digest?.close();
    await sshd?.stop();
  });

  /** A raw MQTT connection to the broker as `user` (for the isolation tests). */
  async function connectRaw(user: string, password: string, clientId = user): Promise<MqttClient> {
    const c = mqtt.connect(broker.url, {
      clientId,
      username: user,
      password,
      ca: readFileSync(stack.caFile),
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    raw.push(c);
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error('connection closed')));
    });
    return c;
  }
  const keyOf = (id: string): string => readFileSync(join(stack.dir, 'devices', `${id}.key`), 'utf8').trim();

  it('add-device wrote an agent config for the broker: its URL, auth key, the hub as relay host', () => {
    const cfg = readFileSync(stack.agentConfig('pi-a'), 'utf8');
    expect(cfg).toContain(`url: "${broker.url}"`);
    expect(cfg).toMatch(/auth: key/);
    expect(cfg).toContain('relayHosts: ["localhost"]');
    expect(stack.hub.lines.some((l) => l.includes('"embedded broker') || l.includes('mqtts listening'))).toBe(false);
  });

  it('a stream through the broker: echo, then 20 MB checked by SHA-256', async () => {
    const s = await client.openStream('pi-a', 'echo');
    const hello = Buffer.from('hello through mosquitto');
    expect((await roundTrip(s, hello)).toString()).toBe(hello.toString());
    const payload = randomBytes(20 * 1024 * 1024);
    const d = await client.openStream('pi-a', 'digest');
    const answer = (await roundTrip(d, payload)).toString().trim();
    expect(answer).toBe(`${sha(payload)} ${payload.length}`);
  });

  it.skipIf(!haveSshd)('ssh through ProxyCommand="devstreams connect %h ssh"', async () => {
    const proxy = `${process.execPath} ${CLI} connect %h ssh`;
    const { stdout } = await exec(
      'ssh',
      [...sshd!.sshArgs('pi-a'), '-o', `ProxyCommand=${proxy}`, `${sshd!.user}@pi-a`, 'echo hello-over-mosquitto'],
      { env: { ...process.env, ...stack.env }, timeout: 30_000 },
    );
    expect(stdout.trim()).toBe('hello-over-mosquitto');
  });

  it('refusals: unknown 404, offline 503, denied 403, target closed 503', async () => {
    expect((await refusalOf(client.openStream('no-such-device', 'echo'))).code).toBe('DEVICE_UNKNOWN');
    const off = await runCli(['connect', 'pi-off', 'echo'], { env: stack.env });
    expect(off.stderr).toMatch(/503 DEVICE_OFFLINE/);
    const denied = await runCli(['connect', 'pi-a', 'ssh-not-allowed'], { env: stack.env });
    expect(denied.stderr).toMatch(/403 SERVICE_DENIED/);
    const dead = await runCli(['connect', 'pi-a', 'dead'], { env: stack.env });
    expect(dead.stderr).toMatch(/503 TARGET_UNREACHABLE: .*ECONNREFUSED/);
  });

  it('the broker refuses a wrong key, and a device id used as someone else\'s client id', async () => {
    await expect(connectRaw('pi-mallory', 'x'.repeat(43))).rejects.toThrow(/Bad User Name or Password|Not authorized/i);
    await expect(connectRaw('pi-mallory', keyOf('pi-mallory'), 'pi-b')).rejects.toThrow(/Identifier rejected|Not authorized|Bad User/i);
  });

  it("isolation: a device cannot subscribe to another's requests or to #, nor publish another's status or responses", async () => {
    const watcher = await connectRaw('admin', broker.adminPassword, 'test-watcher');
    const seen: string[] = [];
    watcher.on('message', (t, p) => seen.push(`${t} ${p.toString()}`));
    await watcher.subscribeAsync('devstreams/v1/devices/#', { qos: 1 });

    const m = await connectRaw('pi-mallory', keyOf('pi-mallory'));
    // SUBACK 0x80 for each refused filter (mqtt.js rejects the call then), a grant for its own request topic.
    const grant = (filter: string): Promise<number> =>
      m.subscribeAsync(filter, { qos: 1 }).then((g) => g[0]!.qos, () => 128);
    for (const f of [topics.streamRequest('pi-b'), '#', 'devstreams/v1/devices/+/streams/request', 'devstreams/v1/devices/pi-b/#']) {
      expect(await grant(f), f).toBe(128);
    }
    expect(await grant(topics.streamRequest('pi-mallory'))).toBe(1);

    await m.publishAsync(topics.status('pi-b'), JSON.stringify({ v: 1, online: false }), { qos: 1, retain: true });
    await m.publishAsync(topics.streamResponse('pi-b', 'hub-x'), '{"forged":true}', { qos: 1 });
    await m.publishAsync(topics.streamRequest('pi-b'), '{"forged":true}', { qos: 1 });
    // The positive control, on the same connection: its own response topic is allowed and arrives after the forgeries.
    await m.publishAsync(topics.streamResponse('pi-mallory', 'marker'), 'marker', { qos: 1 });
    const deadline = Date.now() + 10_000;
    while (!seen.some((s) => s.includes('marker')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(seen.some((s) => s.includes('marker'))).toBe(true);
    expect(seen.filter((s) => s.includes('pi-b/') && !s.includes('"online":true'))).toEqual([]);
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
