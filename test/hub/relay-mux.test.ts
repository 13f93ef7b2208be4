import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DevstreamsError,
  MUX_DEVICE_PATH,
  MUX_SERVICE_PATH,
  MUX_SUBPROTOCOL,
  MUX_SUBPROTOCOLS,
  MUX_SUBPROTOCOL_WINDOWS,
  MuxConnection,
  OpenStreamResultSchema,
  PROTOCOL_VERSION,
  WS_SUBPROTOCOL,
  WsDuplex,
  apiPaths,
  mintDeviceToken,
  newSecret,
  newStreamId,
  type ErrorCode,
  type MuxAttachRequest,
  type MuxChannel,
  type MuxOpenRequest,
  type StreamRecord,
  type StreamRequest,
  type StreamResponse,
} from '../../protocol/index.js';
import { rotateKey, setDeviceDisabled } from '../../hub/device-admin.js';
import { createToken, revokeToken } from '../../hub/token-admin.js';
import { readToEnd, refusalOf, roundTrip, sha256, writeInPieces } from '../helpers/streams.js';
import { api, closed, connectDevice, dialRelay, fakeAgent, nextMessage, recordOf, startTestHub, until, type TestHub } from './helpers.js';

// Multiplexed stream legs (hub/relay-mux.ts) on a real in-process hub: the device endpoint
// (device token, then ATTACH per stream), the service endpoint (service token, then OPEN per
// stream), pairing across leg kinds, refusals, registry and token changes, shutdown.

const MiB = 1024 * 1024;
const ok = { status: 200, code: 'OK', reason: 'ok' } as const;
type Answer = Omit<StreamResponse, 'v' | 'streamId'>;
type Refusal = { status: number; body: any };

/** Rejects if `p` has not settled within `ms` (no test waits on an event without a bound). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** A URL the hub gave (https://localhost:PORT/...), dialled on 127.0.0.1 (the dev certificate names both). */
function local(url: string): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  return u.href;
}

const muxUrl = (hub: TestHub, side: 'device' | 'service'): string =>
  `wss://127.0.0.1:${hub.port}${side === 'device' ? MUX_DEVICE_PATH : MUX_SERVICE_PATH}`;

/** Every secret the tests handed the main hub: none may appear in its logs. */
const secrets = new Set<string>();

function deviceToken(id: string, key: string, ttlSec = 600): string {
  const token = mintDeviceToken(id, key, Math.floor(Date.now() / 1000) + ttlSec);
  secrets.add(token);
  return token;
}

/** Everything a test opened, closed after it. */
const cleanups: Array<() => void> = [];
afterEach(async () => {
  while (cleanups.length) cleanups.pop()!();
  // The main hub has seen every connection of the test go (the counts of the next test start from 0).
  if (t?.hub.relayMux) await until(() => t.hub.relayMux!.connectionCount() === 0, 5000, 'the connections of the test to close');
});

/** Dials a multiplexed endpoint: the open WebSocket, or the refusal's status and JSON body. */
function dialMux(hub: TestHub, side: 'device' | 'service', token: string | null, protocol: string = MUX_SUBPROTOCOL): Promise<{ ws: WebSocket } | Refusal> {
  return within(
    dialRelay(hub, muxUrl(hub, side), token, { protocol }).then((r) => {
      if ('ws' in r) cleanups.push(() => r.ws.terminate());
      return r;
    }),
    5000,
    `the ${side} endpoint's answer`,
  );
}

/** A multiplexed connection (client side) to one of the endpoints. */
async function muxConnect(hub: TestHub, side: 'device' | 'service', token: string): Promise<{ conn: MuxConnection; ws: WebSocket }> {
  const r = await dialMux(hub, side, token);
  if (!('ws' in r)) throw new Error(`${side} connection refused: ${JSON.stringify(r.body)}`);
  expect(r.ws.protocol).toBe(MUX_SUBPROTOCOL);
  return { conn: new MuxConnection({ ws: r.ws, role: 'client' }), ws: r.ws };
}

/** The code a refused ATTACH or OPEN rejects with. */
async function codeOf(p: Promise<unknown>): Promise<ErrorCode> {
  const err = await within(refusalOf(p), 5000, 'the refusal');
  expect(err).toBeInstanceOf(DevstreamsError);
  return err.code;
}

/** A channel's close code (listening from now on: call it before the close can happen). */
async function closeOf(ch: MuxChannel, ms = 5000): Promise<number> {
  const [code] = (await within(once(ch, 'close'), ms, 'the channel close')) as [number, Buffer];
  return code;
}

/** Echoes every message of a channel (binary as binary, text as text), from now on. */
function echoChannel(ch: MuxChannel): MuxChannel {
  ch.on('message', (data: Buffer, isBinary: boolean) => ch.send(data, { binary: isBinary }));
  ch.resume();
  return ch;
}

/** A WsDuplex that must not die of an unhandled error (tests that care look at the close). */
function duplexOf(ch: MuxChannel | WebSocket): WsDuplex {
  const d = new WsDuplex(ch);
  d.on('error', () => {});
  return d;
}

interface FakeDevice {
  id: string;
  key: string;
  mqtt: MqttClient;
  requests: StreamRequest[];
  /** How the fake agent answers a request (null: not now); default 200 and nothing else. */
  onRequest: (req: StreamRequest) => Answer | null;
  /** Answers a request later, as the agent would. */
  answer(req: StreamRequest, a?: Answer): Promise<void>;
}

/** Registers `id`, connects it over MQTT and has a fake agent answer its requests. */
async function onlineDevice(hub: TestHub, id: string): Promise<FakeDevice> {
  const key = hub.addDevice(id);
  const mqtt = await connectDevice(hub, id, key);
  const dev: FakeDevice = {
    id,
    key,
    mqtt,
    requests: [],
    onRequest: () => ok,
    async answer(req, a = ok) {
      await mqtt.publishAsync(req.replyTo, JSON.stringify({ v: PROTOCOL_VERSION, streamId: req.streamId, ...a }), { qos: 1 });
    },
  };
  dev.requests = await fakeAgent(mqtt, id, (req) => dev.onRequest(req));
  await until(() => hub.hub.presence.isOnline(id), 3000, `${id} online`);
  return dev;
}

/** The device side of a stream, dialled per-stream, echoing every frame. */
async function dialEcho(hub: TestHub, req: StreamRequest): Promise<WebSocket> {
  const d = await dialRelay(hub, local(req.relayUrl), req.token);
  if (!('ws' in d)) throw Object.assign(new Error('device leg refused'), { refusal: d });
  cleanups.push(() => d.ws.terminate());
  d.ws.on('message', (data: Buffer, isBinary: boolean) => d.ws.send(data, { binary: isBinary }));
  return d.ws;
}

let t: TestHub;
let devA: FakeDevice;

/** Device A answers each stream request by attaching a channel on `devConn` that echoes; the channels by stream id. */
function answerWithEchoChannels(devConn: MuxConnection): Map<string, Promise<{ ch: MuxChannel; closed: Promise<number> }>> {
  const devChannels = new Map<string, Promise<{ ch: MuxChannel; closed: Promise<number> }>>();
  devA.onRequest = (req) => {
    const ch = devConn.attach({ streamId: req.streamId, token: req.token }, { timeoutMs: 5000 }).then((c) => ({ ch: echoChannel(c), closed: closeOf(c, 30_000) }));
    ch.catch(() => {});
    devChannels.set(req.streamId, ch);
    return ok;
  };
  return devChannels;
}
let devB: FakeDevice;
const configFile = (): string => join(t.dir, 'hub.yaml');

beforeAll(async () => {
  t = await startTestHub();
  devA = await onlineDevice(t, 'mux-dev');
  devB = await onlineDevice(t, 'mux-other');
  t.addDevice('mux-offline');
});
afterAll(async () => {
  await Promise.all([devA?.mqtt.endAsync(true), devB?.mqtt.endAsync(true)]);
  await t?.stop();
});
afterEach(() => {
  devA.onRequest = () => ok;
  devB.onRequest = () => ok;
});

/** Opens a stream through the REST API (the device answers 200): its id, relay URL and both tokens. */
async function requestStream(dev: FakeDevice, service = 'echo'): Promise<{ streamId: string; url: string; serviceToken: string; deviceToken: string }> {
  const r = await api(t, 'POST', apiPaths.openStream(dev.id), { body: { service } });
  expect(r.status).toBe(201);
  const result = OpenStreamResultSchema.parse(r.body);
  const req = dev.requests.find((q) => q.streamId === result.streamId)!;
  secrets.add(result.token);
  return { streamId: result.streamId, url: result.url, serviceToken: result.token, deviceToken: req.token };
}

/** Dials a stream's per-stream service leg. */
async function serviceLeg(s: { url: string; serviceToken: string }): Promise<WebSocket> {
  const v = await within(dialRelay(t, local(s.url), s.serviceToken), 5000, 'the service leg');
  if (!('ws' in v)) throw new Error(`service leg refused: ${JSON.stringify(v.body)}`);
  cleanups.push(() => v.ws.terminate());
  return v.ws;
}

/** A fresh stream of devA, attached on `conn`, carries a message to and back from its service leg, and ends. */
async function carriesAStream(conn: MuxConnection, what: string): Promise<void> {
  const s = await requestStream(devA);
  const ch = echoChannel(await conn.attach({ streamId: s.streamId, token: s.deviceToken }, { timeoutMs: 5000 }));
  const svc = await serviceLeg(s);
  const back = nextMessage(svc);
  svc.send(Buffer.from(what));
  expect((await within(back, 5000, 'the echo')).data.toString()).toBe(what);
  const chClosed = closeOf(ch);
  svc.close(1000);
  expect(await chClosed).toBe(1000);
}

describe('device endpoint: refusals before the upgrade', () => {
  let disabledKey: string;
  beforeAll(() => {
    disabledKey = t.addDevice('mux-disabled');
    setDeviceDisabled({ configFile: configFile(), deviceId: 'mux-disabled', disabled: true });
  });

  it.each<[string, () => string | null, string | undefined, number, ErrorCode]>([
    ['no bearer token', () => null, undefined, 401, 'UNAUTHORIZED'],
    ['a token that is not a device token', () => newSecret(), undefined, 401, 'UNAUTHORIZED'],
    ["the device's static key (only device tokens prove a device here)", () => devA.key, undefined, 401, 'UNAUTHORIZED'],
    ['a malformed device token', () => `dsas1.mux-dev.${Math.floor(Date.now() / 1000) + 600}.short`, undefined, 401, 'UNAUTHORIZED'],
    ['a token of an unknown device', () => deviceToken('nobody-here', newSecret()), undefined, 401, 'UNAUTHORIZED'],
    ['a token signed with another key', () => deviceToken('mux-dev', newSecret()), undefined, 401, 'UNAUTHORIZED'],
    ["another device's token presented as its own", () => deviceToken('mux-dev', devB.key), undefined, 401, 'UNAUTHORIZED'],
    ['an expired token', () => deviceToken('mux-dev', devA.key, -3600), undefined, 401, 'UNAUTHORIZED'],
    ['a token reaching past deviceAuth.maxTokenTtlSeconds', () => deviceToken('mux-dev', devA.key, 30 * 86_400), undefined, 401, 'UNAUTHORIZED'],
    ['a token of a disabled device', () => deviceToken('mux-disabled', disabledKey), undefined, 401, 'UNAUTHORIZED'],
    ['a service token', () => t.token, undefined, 401, 'UNAUTHORIZED'],
    ['the per-stream subprotocol', () => deviceToken('mux-dev', devA.key), WS_SUBPROTOCOL, 426, 'VERSION_MISMATCH'],
    ['another subprotocol', () => deviceToken('mux-dev', devA.key), 'mqtt', 426, 'VERSION_MISMATCH'],
  ])('refuses %s with its status and code', async (_what, token, protocol, status, code) => {
    const before = t.hub.relayMux!.connectionCount();
    const r = await dialMux(t, 'device', token(), protocol);
    expect('ws' in r).toBe(false);
    if ('ws' in r) return;
    expect(r.status).toBe(status);
    expect(r.body.error).toMatchObject({ code, status });
    expect(t.hub.relayMux!.connectionCount()).toBe(before);
  });

  it('accepts a valid device token (the control for the refusals above)', async () => {
    const before = t.hub.relayMux!.connectionCount();
    const { conn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    await until(() => t.hub.relayMux!.connectionCount() === before + 1, 3000, 'the connection counted');
    expect(conn.usable).toBe(true);
    const gone = once(conn, 'close');
    conn.close(1000);
    await within(gone, 5000, 'the connection close');
    await until(() => t.hub.relayMux!.connectionCount() === before, 3000, 'the connection uncounted');
  });
});

describe('device endpoint: ATTACH', () => {
  it("pairs a stream of the connection's device with its per-stream service leg: bytes both ways, recorded ok with the byte counts", async () => {
    const { conn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const s = await requestStream(devA);
    const channel = await conn.attach({ streamId: s.streamId, token: s.deviceToken }, { timeoutMs: 5000 });
    expect(channel.readyState).toBe(channel.OPEN);
    const dev = duplexOf(channel);
    channel.resume();
    // The device writes first, before its peer is there: the bytes wait in the relay.
    const fromDevice = randomBytes(2 * MiB + 3);
    const toDevice = randomBytes(3 * MiB + 5); // past the channel's window: credits must flow through the relay
    const devGot = readToEnd(dev);
    const devClosed = closeOf(channel, 20_000);
    writeInPieces(dev, fromDevice);
    const svcWs = await serviceLeg(s);
    const svcClosed = within(closed(svcWs), 20_000, 'the service leg close');
    const svc = duplexOf(svcWs);
    const svcGot = readToEnd(svc);
    writeInPieces(svc, toDevice);
    expect(await within(devGot, 15_000, 'the bytes at the device')).toEqual({ bytes: toDevice.length, digest: sha256(toDevice) });
    expect(await within(svcGot, 15_000, 'the bytes at the service')).toEqual({ bytes: fromDevice.length, digest: sha256(fromDevice) });
    // Both sides sent and received EOF: each closes with 1000.
    expect(await devClosed).toBe(1000);
    expect((await svcClosed).code).toBe(1000);
    const rec = await recordOf(t, s.streamId);
    expect(rec).toMatchObject({
      device: 'mux-dev',
      service: 'echo',
      result: 'ok',
      code: 'OK',
      bytesToDevice: toDevice.length,
      bytesFromDevice: fromDevice.length,
    });
    // The stream ended, the connection did not.
    expect(conn.usable).toBe(true);
    expect(conn.channelCount).toBe(0);
  });

  it('refuses a service token, a token of another device, an unknown stream id and a used token; each leaves the connection usable', async () => {
    const { conn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const attach = (req: MuxAttachRequest): Promise<MuxChannel> => conn.attach(req, { timeoutMs: 5000 });
    await carriesAStream(conn, 'before any refusal');

    // The stream's service token: a token of the other role.
    const a = await requestStream(devA);
    expect(await codeOf(attach({ streamId: a.streamId, token: a.serviceToken }))).toBe('UNAUTHORIZED');
    await carriesAStream(conn, 'after a service token');

    // A device token of a stream of ANOTHER device: valid for its stream, not on this device's connection.
    const b = await requestStream(devB);
    expect(await codeOf(attach({ streamId: b.streamId, token: b.deviceToken }))).toBe('UNAUTHORIZED');
    await carriesAStream(conn, "after another device's token");

    // Unknown stream ids: with a real device token of another stream, and with a made-up token.
    expect(await codeOf(attach({ streamId: newStreamId(), token: a.deviceToken }))).toBe('UNAUTHORIZED');
    expect(await codeOf(attach({ streamId: newStreamId(), token: newSecret() }))).toBe('UNAUTHORIZED');
    await carriesAStream(conn, 'after an unknown stream id');

    // A token used once already: on this connection, and by a per-stream dial.
    const used = await requestStream(devA);
    const first = echoChannel(await attach({ streamId: used.streamId, token: used.deviceToken }));
    expect(await codeOf(attach({ streamId: used.streamId, token: used.deviceToken }))).toBe('TOKEN_USED');
    await carriesAStream(conn, 'after a token reused on the connection');
    const dialled = await requestStream(devA);
    const perStream = await dialRelay(t, local(dialled.url), dialled.deviceToken);
    expect('ws' in perStream).toBe(true);
    if ('ws' in perStream) cleanups.push(() => perStream.ws.terminate());
    expect(await codeOf(attach({ streamId: dialled.streamId, token: dialled.deviceToken }))).toBe('TOKEN_USED');
    await carriesAStream(conn, 'after a token used by a per-stream dial');

    // The refusals spent nothing: a's device token and service token, and b's device token, still join their streams.
    const aDev = echoChannel(await attach({ streamId: a.streamId, token: a.deviceToken }));
    const aSvc = await serviceLeg(a);
    const back = nextMessage(aSvc);
    aSvc.send(Buffer.from('a still works'));
    expect((await within(back, 5000, 'the echo on a')).data.toString()).toBe('a still works');
    const bDev = await dialRelay(t, local(b.url), b.deviceToken);
    expect('ws' in bDev).toBe(true);
    if ('ws' in bDev) cleanups.push(() => bDev.ws.terminate());
    // And the first use of `used` still carries its stream.
    const usedSvc = await serviceLeg(used);
    const back2 = nextMessage(usedSvc);
    usedSvc.send(Buffer.from('first use'));
    expect((await within(back2, 5000, 'the echo on used')).data.toString()).toBe('first use');
    expect(conn.usable).toBe(true);
    expect([aDev.readyState, first.readyState]).toEqual([aDev.OPEN, first.OPEN]);
  });

  it('answers an OPEN on the device endpoint with NOT_FOUND, and keeps the connection', async () => {
    const { conn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const seen = devA.requests.length;
    expect(await codeOf(conn.open({ device: 'mux-dev', service: 'echo' }, { timeoutMs: 5000 }))).toBe('NOT_FOUND');
    expect(devA.requests.length).toBe(seen);
    await carriesAStream(conn, 'after an OPEN');
  });
});

describe('device connections and registry changes', () => {
  it("disabling the device closes its multiplexed connection with 4401 and ends its stream; another device's connection stays", async () => {
    const victim = await onlineDevice(t, 'mux-victim');
    try {
      const { conn: vconn, ws: vws } = await muxConnect(t, 'device', deviceToken('mux-victim', victim.key));
      const { conn: bystander } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
      await until(() => t.hub.relayMux!.connectionCount() >= 2, 3000, 'both connections counted');
      const before = t.hub.relayMux!.connectionCount();
      const s = await requestStream(victim);
      const ch = echoChannel(await vconn.attach({ streamId: s.streamId, token: s.deviceToken }, { timeoutMs: 5000 }));
      const svc = await serviceLeg(s);
      const back = nextMessage(svc);
      svc.send(Buffer.from('before'));
      expect((await within(back, 5000, 'the echo')).data.toString()).toBe('before');

      const vClosed = within(closed(vws), 5000, "the victim's connection close");
      const svcClosed = within(closed(svc), 5000, 'the service leg close');
      const chClosed = closeOf(ch);
      setDeviceDisabled({ configFile: configFile(), deviceId: 'mux-victim', disabled: true });
      expect((await vClosed).code).toBe(4401);
      expect(await chClosed).toBe(1006); // the channel went with its connection
      expect((await svcClosed).code).toBe(4502); // PEER_GONE to the other side
      await until(() => t.hub.relayMux!.connectionCount() === before - 1, 3000, 'the connection uncounted');
      expect(await recordOf(t, s.streamId)).toMatchObject({ device: 'mux-victim', result: 'error', code: 'PEER_GONE', closedBy: 'device' });
      // The bystander's connection was not touched, and the victim cannot come back.
      await carriesAStream(bystander, 'bystander');
      expect(await dialMux(t, 'device', deviceToken('mux-victim', victim.key))).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
    } finally {
      victim.mqtt.end(true);
    }
  });

  it('replacing the key a connection proved closes it with 4401; a change to the other slot does not', async () => {
    const oldKey = t.addDevice('mux-rot');
    const { conn: viaPrimary, ws: primaryWs } = await muxConnect(t, 'device', deviceToken('mux-rot', oldKey));
    const alive = async (conn: MuxConnection): Promise<void> => {
      // A round trip: the hub still serves the connection (an ATTACH it must refuse).
      expect(await codeOf(conn.attach({ streamId: newStreamId(), token: newSecret() }, { timeoutMs: 5000 }))).toBe('UNAUTHORIZED');
      expect(conn.usable).toBe(true);
    };
    // A new key in the secondary slot: the primary one this connection proved is unchanged.
    const r = rotateKey({ configFile: configFile(), deviceId: 'mux-rot', slot: 'secondary' });
    expect(t.hub.registry.get('mux-rot')?.keys.secondary).toBeDefined(); // the hub reloaded the registry (and rechecked)
    await alive(viaPrimary);
    const newKey = readFileSync(r.keyFile!, 'utf8');
    const { conn: viaSecondary } = await muxConnect(t, 'device', deviceToken('mux-rot', newKey));
    await until(() => t.hub.relayMux!.connectionCount() >= 2, 3000, 'both connections counted');
    const before = t.hub.relayMux!.connectionCount();
    // The primary key replaced: the connection that proved it closes; the one on the secondary key stays.
    const primaryClosed = within(closed(primaryWs), 5000, 'the primary connection close');
    rotateKey({ configFile: configFile(), deviceId: 'mux-rot', slot: 'primary' });
    expect((await primaryClosed).code).toBe(4401);
    await until(() => t.hub.relayMux!.connectionCount() === before - 1, 3000, 'the connection uncounted');
    await alive(viaSecondary);
    expect(await dialMux(t, 'device', deviceToken('mux-rot', oldKey))).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
  });
});

describe('service endpoint', () => {
  it.each<[string, () => string | null, string | undefined, number, ErrorCode]>([
    ['no bearer token', () => null, undefined, 401, 'UNAUTHORIZED'],
    ['an unknown token', () => newSecret(), undefined, 401, 'UNAUTHORIZED'],
    ['a device token', () => deviceToken('mux-dev', devA.key), undefined, 401, 'UNAUTHORIZED'],
    ['the per-stream subprotocol', () => t.token, WS_SUBPROTOCOL, 426, 'VERSION_MISMATCH'],
  ])('refuses %s before the upgrade', async (_what, token, protocol, status, code) => {
    const before = t.hub.relayMux!.connectionCount();
    const r = await dialMux(t, 'service', token(), protocol);
    expect('ws' in r).toBe(false);
    if ('ws' in r) return;
    expect(r.status).toBe(status);
    expect(r.body.error).toMatchObject({ code, status });
    expect(t.hub.relayMux!.connectionCount()).toBe(before);
  });

  it('refuses OPEN for an unknown or offline device and for a malformed body, before the device is asked; the connection stays usable', async () => {
    const { conn } = await muxConnect(t, 'service', t.token);
    const open = (body: unknown): Promise<unknown> => conn.open(body as MuxOpenRequest, { timeoutMs: 5000 });
    const seen = devA.requests.length;
    expect(await codeOf(open({ device: 'nobody-here', service: 'echo' }))).toBe('DEVICE_UNKNOWN');
    expect(await codeOf(open({ device: 'mux-offline', service: 'echo' }))).toBe('DEVICE_OFFLINE');
    for (const body of [
      42,
      'mux-dev',
      null,
      ['mux-dev', 'echo'],
      {},
      { service: 'echo' },
      { device: 7, service: 'echo' },
      { device: 'mux-dev' },
      { device: 'mux-dev', service: '' },
      { device: 'mux-dev', service: 'echo', extra: true },
      { device: 'mux-dev', service: 'echo', timeoutMs: 5 },
      { device: 'not/a/device', service: 'echo' },
      { device: '\ud800', service: 'echo' }, // a lone surrogate: not even URL-encodable
    ]) {
      expect(await codeOf(open(body)), JSON.stringify(body)).toBe('BAD_REQUEST');
    }
    expect(devA.requests.length).toBe(seen);
    // An ATTACH is not for this endpoint.
    expect(await codeOf(conn.attach({ streamId: newStreamId(), token: newSecret() }, { timeoutMs: 5000 }))).toBe('NOT_FOUND');
    // Still usable: a valid OPEN reaches the device and is accepted.
    expect(conn.usable).toBe(true);
    const { channel, streamId } = await conn.open({ device: 'mux-dev', service: 'echo' }, { timeoutMs: 10_000 });
    expect(devA.requests.map((q) => q.streamId)).toContain(streamId);
    channel.terminate();
  });

  it("refuses OPEN outside the token's scope with FORBIDDEN, before the device is asked", async () => {
    const { token } = createToken({ configFile: configFile(), name: 'mux-scoped', devices: 'mux-other', services: 'ssh' });
    secrets.add(token);
    const { conn } = await muxConnect(t, 'service', token);
    const seen = devA.requests.length + devB.requests.length;
    const open = (device: string, service: string): Promise<unknown> => conn.open({ device, service }, { timeoutMs: 5000 });
    expect(await codeOf(open('mux-dev', 'ssh'))).toBe('FORBIDDEN'); // device outside the scope
    expect(await codeOf(open('mux-other', 'echo'))).toBe('FORBIDDEN'); // service outside the scope
    expect(await codeOf(open('nobody-here', 'ssh'))).toBe('FORBIDDEN'); // not DEVICE_UNKNOWN: the token learns nothing
    expect(devA.requests.length + devB.requests.length).toBe(seen);
    // Inside the scope, the same connection opens a stream.
    const { channel, streamId } = await conn.open({ device: 'mux-other', service: 'ssh' }, { timeoutMs: 10_000 });
    expect(devB.requests.at(-1)).toMatchObject({ streamId, service: 'ssh' });
    channel.terminate(); // the service gives up on it: the stream ends unpaired
    expect(await recordOf(t, streamId)).toMatchObject({ requestedBy: 'mux-scoped', result: 'unpaired' });
  });

  it('an OPEN answered by the device pairs with its per-stream leg: a 22-character stream id, bytes both ways, recorded ok', async () => {
    const deviceLegs = new Map<string, Promise<WebSocket>>();
    devA.onRequest = (req) => {
      const leg = dialEcho(t, req);
      leg.catch(() => {});
      deviceLegs.set(req.streamId, leg);
      return ok;
    };
    const { conn } = await muxConnect(t, 'service', t.token);
    const { channel, streamId } = await conn.open({ device: 'mux-dev', service: 'echo', timeoutMs: 10_000 }, { timeoutMs: 15_000 });
    expect(streamId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(devA.requests.at(-1)!.streamId).toBe(streamId);
    const devWs = await within(deviceLegs.get(streamId)!, 5000, 'the device leg');
    const devClosed = within(closed(devWs), 20_000, 'the device leg close');
    const svcClosed = closeOf(channel, 20_000);
    const svc = duplexOf(channel);
    channel.resume();
    const payload = randomBytes(2 * MiB + 1);
    const back = await within(roundTrip(svc, payload), 15_000, 'the round trip');
    expect(sha256(back)).toBe(sha256(payload));
    expect(await svcClosed).toBe(1000);
    expect((await devClosed).code).toBe(1000);
    expect(await recordOf(t, streamId)).toMatchObject({
      device: 'mux-dev',
      service: 'echo',
      requestedBy: 'default',
      result: 'ok',
      code: 'OK',
      bytesToDevice: payload.length,
      bytesFromDevice: payload.length,
    });
    expect(conn.usable).toBe(true);
  });

  it("an OPEN pairs with the device's multiplexed connection too: bytes both ways, recorded ok", async () => {
    const { conn: devConn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const devChannels = answerWithEchoChannels(devConn);
    const { conn } = await muxConnect(t, 'service', t.token);
    // Two streams at once on the same two connections.
    const opened = await Promise.all([1, 2].map(() => conn.open({ device: 'mux-dev', service: 'echo' }, { timeoutMs: 15_000 })));
    const payloads = [randomBytes(MiB + 17), randomBytes(3 * MiB)];
    const svcClosed = opened.map(({ channel }) => closeOf(channel, 30_000));
    const results = await within(
      Promise.all(
        opened.map(({ channel }, i) => {
          const d = duplexOf(channel);
          channel.resume();
          return roundTrip(d, payloads[i]!);
        }),
      ),
      20_000,
      'both round trips',
    );
    for (const [i, { streamId }] of opened.entries()) {
      expect(sha256(results[i]!)).toBe(sha256(payloads[i]!));
      expect(await svcClosed[i]).toBe(1000);
      expect(await (await devChannels.get(streamId)!).closed).toBe(1000);
      expect(await recordOf(t, streamId)).toMatchObject({ result: 'ok', bytesToDevice: payloads[i]!.length, bytesFromDevice: payloads[i]!.length });
    }
    expect(devConn.usable && conn.usable).toBe(true);
  });

  it('checks the service token again at each OPEN: revoked after the upgrade, the next OPEN is UNAUTHORIZED', async () => {
    const { token } = createToken({ configFile: configFile(), name: 'mux-temp' });
    secrets.add(token);
    const { conn } = await muxConnect(t, 'service', token);
    // Before the revocation: the token passes (the answers come from past the token check).
    expect(await codeOf(conn.open({ device: 'mux-offline', service: 'echo' }, { timeoutMs: 5000 }))).toBe('DEVICE_OFFLINE');
    const first = await conn.open({ device: 'mux-dev', service: 'echo' }, { timeoutMs: 10_000 });
    first.channel.terminate();
    revokeToken({ configFile: configFile(), name: 'mux-temp' });
    const seen = devA.requests.length;
    expect(await codeOf(conn.open({ device: 'mux-dev', service: 'echo' }, { timeoutMs: 5000 }))).toBe('UNAUTHORIZED');
    expect(await codeOf(conn.open({ device: 'mux-offline', service: 'echo' }, { timeoutMs: 5000 }))).toBe('UNAUTHORIZED');
    expect(devA.requests.length).toBe(seen);
    expect(await dialMux(t, 'service', token)).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
  });
});

describe('refusals by the device, flow control, malformed frames', () => {
  it("passes the device's refusal and its silence on as the OPEN's refusal code, recorded", async () => {
    const { conn } = await muxConnect(t, 'service', t.token);
    devA.onRequest = () => ({ status: 403, code: 'SERVICE_DENIED', reason: 'not in the allowlist' });
    expect(await codeOf(conn.open({ device: 'mux-dev', service: 'telnet' }, { timeoutMs: 5000 }))).toBe('SERVICE_DENIED');
    expect(await recordOf(t, devA.requests.at(-1)!.streamId)).toMatchObject({ result: 'refused', code: 'SERVICE_DENIED', status: 403 });
    devA.onRequest = () => null;
    expect(await codeOf(conn.open({ device: 'mux-dev', service: 'echo', timeoutMs: 1000 }, { timeoutMs: 5000 }))).toBe('DEVICE_TIMEOUT');
    expect(await recordOf(t, devA.requests.at(-1)!.streamId)).toMatchObject({ result: 'timeout', code: 'DEVICE_TIMEOUT' });
    expect(conn.usable).toBe(true);
  });

  it('a device channel that does not read pauses its per-stream sender through the relay, and loses nothing', async () => {
    const { conn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const s = await requestStream(devA);
    const ch = await conn.attach({ streamId: s.streamId, token: s.deviceToken }, { timeoutMs: 5000 }); // paused: not reading
    const svc = await serviceLeg(s);
    const total = 24 * MiB;
    const chunk = Buffer.alloc(MiB, 0x61);
    for (let sent = 0; sent < total; sent += chunk.length) svc.send(chunk);
    await until(() => t.hub.relay.backpressuredCount() === 1, 10_000, 'the relay to pause the service leg');
    let received = 0;
    const all = new Promise<void>((resolve) =>
      ch.on('message', (data: Buffer) => {
        received += data.length;
        if (received === total) resolve();
      }),
    );
    ch.resume();
    await within(all, 20_000, 'every byte at the device');
    await until(() => t.hub.relay.backpressuredCount() === 0, 3000, 'the relay to resume');
    const chClosed = closeOf(ch);
    svc.close(1000);
    expect(await chClosed).toBe(1000);
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'ok', bytesToDevice: total });
  });

  it('a malformed frame closes the connection with BAD_REQUEST, and its streams end with it', async () => {
    const { conn, ws } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const s = await requestStream(devA);
    echoChannel(await conn.attach({ streamId: s.streamId, token: s.deviceToken }, { timeoutMs: 5000 }));
    const svc = await serviceLeg(s);
    const back = nextMessage(svc);
    svc.send(Buffer.from('x'));
    await within(back, 5000, 'the echo');
    const svcClosed = within(closed(svc), 5000, 'the service leg close');
    const connClosed = within(closed(ws), 5000, 'the connection close');
    ws.send(Buffer.from([0x63, 0, 0, 0, 1])); // an unknown frame type
    expect((await connClosed).code).toBe(4400);
    expect((await svcClosed).code).toBe(4400);
    expect(await recordOf(t, s.streamId)).toMatchObject({ result: 'error', code: 'BAD_REQUEST', closedBy: 'device' });
  });
});

describe('the service side leaves before the device answers', () => {
  /** OPENs a stream the device does not answer yet; returns its request and a way to abort the OPEN. */
  async function pendingOpen(conn: MuxConnection): Promise<{ req: StreamRequest; abort: () => void; refused: Promise<ErrorCode> }> {
    devA.onRequest = () => null;
    const seen = devA.requests.length;
    const ac = new AbortController();
    // A deadline far beyond the test: a stream left for it would not be recorded in time.
    const refused = codeOf(conn.open({ device: 'mux-dev', service: 'echo', timeoutMs: 120_000 }, { timeoutMs: 130_000, signal: ac.signal }));
    await until(() => devA.requests.length > seen, 3000, 'the request at the device');
    return { req: devA.requests[seen]!, abort: () => ac.abort(), refused };
  }

  it('an OPEN given up (its channel closed): the stream ends at once, unpaired PEER_GONE, and the device finds it ended', async () => {
    const { conn } = await muxConnect(t, 'service', t.token);
    const { req, abort, refused } = await pendingOpen(conn);
    abort();
    expect(await refused).toBe('SHUTTING_DOWN'); // the client's own abort
    // A round trip on the same connection: the hub has seen the channel's close before the device answers.
    expect(await codeOf(conn.open({ device: 'nobody-here', service: 'echo' }, { timeoutMs: 5000 }))).toBe('DEVICE_UNKNOWN');
    await devA.answer(req);
    const rec = await recordOf(t, req.streamId);
    expect(rec).toMatchObject({ streamId: req.streamId, result: 'unpaired', code: 'PEER_GONE', closedBy: 'service' });
    expect(rec!.durationMs).toBeLessThan(60_000);
    // The device's side, dialled after its answer, finds the stream ended.
    expect(await dialRelay(t, local(req.relayUrl), req.token)).toMatchObject({ status: 410, body: { error: { code: 'STREAM_EXPIRED' } } });
    expect(conn.usable).toBe(true);
  });

  it("the device's side already attached: it is closed with PEER_GONE as soon as the device's answer arrives", async () => {
    const { conn: devConn } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key));
    const { conn } = await muxConnect(t, 'service', t.token);
    const { req, abort, refused } = await pendingOpen(conn);
    // The agent attaches before it answers (as a real one may).
    const devCh = await devConn.attach({ streamId: req.streamId, token: req.token }, { timeoutMs: 5000 });
    devCh.resume();
    const devClosed = closeOf(devCh);
    abort();
    expect(await refused).toBe('SHUTTING_DOWN');
    expect(await codeOf(conn.open({ device: 'nobody-here', service: 'echo' }, { timeoutMs: 5000 }))).toBe('DEVICE_UNKNOWN');
    await devA.answer(req);
    expect(await devClosed).toBe(4502);
    expect(await recordOf(t, req.streamId)).toMatchObject({ result: 'unpaired', code: 'PEER_GONE', closedBy: 'service' });
    expect(devConn.usable).toBe(true);
  });

  it('the whole service connection lost while the device has not answered: the same', async () => {
    const { conn, ws } = await muxConnect(t, 'service', t.token);
    const before = t.hub.relayMux!.connectionCount();
    const { req, refused } = await pendingOpen(conn);
    ws.terminate();
    expect(await refused).toBe('PEER_GONE');
    await until(() => t.hub.relayMux!.connectionCount() === before - 1, 3000, 'the hub to see the connection go');
    await devA.answer(req);
    const rec = await recordOf(t, req.streamId);
    expect(rec).toMatchObject({ result: 'unpaired', code: 'PEER_GONE', closedBy: 'service' });
    expect(rec!.durationMs).toBeLessThan(60_000);
  });
});

/** Dials a multiplexed endpoint offering `protocols` (several, as a client does): the open WebSocket, or the refusal. */
function dialOffering(hub: TestHub, side: 'device' | 'service', token: string, protocols: readonly string[]): Promise<{ ws: WebSocket } | Refusal> {
  const dial = new Promise<{ ws: WebSocket } | Refusal>((resolve, reject) => {
    const ws = new WebSocket(muxUrl(hub, side), [...protocols], { ca: hub.ca, perMessageDeflate: false, headers: { authorization: `Bearer ${token}` } });
    cleanups.push(() => ws.terminate());
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    ws.once('error', reject);
  });
  return within(dial, 5000, `the ${side} endpoint's answer`);
}

/** Counts the window-sampling pings (protocol/mux-window.ts) a WebSocket receives. */
function samplePings(ws: WebSocket): () => number {
  let n = 0;
  ws.on('ping', (data: Buffer) => {
    if (data.toString() === 'devstreams-window') n++;
  });
  return () => n;
}

describe('subprotocol negotiation: window updates (devstreams.v1.mux2) and the v1 framing', () => {
  it.each(['device', 'service'] as const)('%s endpoint: offering both subprotocols, in either order, or mux2 alone, gets devstreams.v1.mux2 and window updates', async (side) => {
    const token = side === 'device' ? deviceToken('mux-dev', devA.key) : t.token;
    for (const offer of [MUX_SUBPROTOCOLS, [...MUX_SUBPROTOCOLS].reverse(), [MUX_SUBPROTOCOL_WINDOWS]]) {
      const r = await dialOffering(t, side, token, offer);
      if (!('ws' in r)) throw new Error(`refused: ${JSON.stringify(r.body)}`);
      expect(r.ws.protocol, offer.join()).toBe(MUX_SUBPROTOCOL_WINDOWS);
      const conn = new MuxConnection({ ws: r.ws, role: 'client' });
      expect(conn.windowUpdates).toBe(true);
      const gone = once(conn, 'close');
      conn.close(1000);
      await within(gone, 5000, 'the connection close');
    }
  });

  it.each(['device', 'service'] as const)('%s endpoint: offering only devstreams.v1.mux gets it, without window updates', async (side) => {
    const r = await dialOffering(t, side, side === 'device' ? deviceToken('mux-dev', devA.key) : t.token, [MUX_SUBPROTOCOL]);
    if (!('ws' in r)) throw new Error(`refused: ${JSON.stringify(r.body)}`);
    expect(r.ws.protocol).toBe(MUX_SUBPROTOCOL);
    expect(new MuxConnection({ ws: r.ws, role: 'client' }).windowUpdates).toBe(false);
  });

  it.each(['device', 'service'] as const)('%s endpoint: offering neither (other versions, the per-stream subprotocol) is refused with 426 VERSION_MISMATCH', async (side) => {
    const before = t.hub.relayMux!.connectionCount();
    const token = side === 'device' ? deviceToken('mux-dev', devA.key) : t.token;
    for (const offer of [['devstreams.v1.mux3', 'devstreams.v2.mux2', 'devstreams.v2.mux'], [WS_SUBPROTOCOL, 'mqtt']]) {
      const r = await dialOffering(t, side, token, offer);
      expect('ws' in r, offer.join()).toBe(false);
      if ('ws' in r) return;
      expect(r.status).toBe(426);
      expect(r.body.error).toMatchObject({ code: 'VERSION_MISMATCH', status: 426 });
    }
    expect(t.hub.relayMux!.connectionCount()).toBe(before);
  });

  it('an old device client (devstreams.v1.mux only) and a mux2 service client carry a stream both ways intact; only the mux2 connection is sampled', async () => {
    const { conn: devConn, ws: devWs } = await muxConnect(t, 'device', deviceToken('mux-dev', devA.key)); // offers only devstreams.v1.mux
    const devPings = samplePings(devWs);
    const r = await dialOffering(t, 'service', t.token, MUX_SUBPROTOCOLS);
    if (!('ws' in r)) throw new Error(`refused: ${JSON.stringify(r.body)}`);
    expect(r.ws.protocol).toBe(MUX_SUBPROTOCOL_WINDOWS);
    const svcPings = samplePings(r.ws);
    const conn = new MuxConnection({ ws: r.ws, role: 'client' });
    const devChannels = answerWithEchoChannels(devConn);
    const { channel, streamId } = await conn.open({ device: 'mux-dev', service: 'echo' }, { timeoutMs: 15_000 });
    const svcClosed = closeOf(channel, 30_000);
    const payload = randomBytes(6 * MiB + 11); // several windows each way
    const d = duplexOf(channel);
    channel.resume();
    const back = await within(roundTrip(d, payload), 20_000, 'the round trip');
    expect(sha256(back)).toBe(sha256(payload));
    expect(await svcClosed).toBe(1000);
    expect(await (await devChannels.get(streamId)!).closed).toBe(1000);
    expect(await recordOf(t, streamId)).toMatchObject({ result: 'ok', code: 'OK', bytesToDevice: payload.length, bytesFromDevice: payload.length });
    // The hub samples the windows of the mux2 connection's channels, never those of the v1 one.
    expect(svcPings()).toBeGreaterThan(0);
    expect(devPings()).toBe(0);
    expect(devConn.usable && conn.usable).toBe(true);
  });
});

describe('relay.multiplex: false', () => {
  it('answers both multiplexed paths with 404 NOT_FOUND', async () => {
    const off = await startTestHub({ relay: { pingIntervalMs: 15_000, multiplex: false } });
    try {
      expect(off.hub.relayMux).toBeNull();
      const key = off.addDevice('plain');
      for (const [side, token] of [['device', deviceToken('plain', key)], ['service', off.token]] as const) {
        const r = await dialMux(off, side, token);
        expect('ws' in r, side).toBe(false);
        if (!('ws' in r)) expect(r, side).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND', status: 404 } } });
      }
    } finally {
      await off.stop();
    }
  });
});

describe('hub stop', () => {
  it('closes an open multiplexed stream with 1001 (SHUTTING_DOWN) on both channels, then the connections', async () => {
    const t2 = await startTestHub();
    const dev = await onlineDevice(t2, 'stop-dev');
    try {
      const { conn: devConn } = await muxConnect(t2, 'device', deviceToken('stop-dev', dev.key));
      const { conn: svcConn } = await muxConnect(t2, 'service', t2.token);
      let devCh: Promise<MuxChannel> | undefined;
      dev.onRequest = (req) => {
        devCh = devConn.attach({ streamId: req.streamId, token: req.token }, { timeoutMs: 5000 }).then(echoChannel);
        devCh.catch(() => {});
        return ok;
      };
      const { channel: svcCh, streamId } = await svcConn.open({ device: 'stop-dev', service: 'echo' }, { timeoutMs: 10_000 });
      const back = new Promise<Buffer>((resolve) => svcCh.once('message', (data: Buffer) => resolve(data)));
      svcCh.resume();
      svcCh.send(Buffer.from('paired'), { binary: true });
      expect((await within(back, 5000, 'the echo')).toString()).toBe('paired');
      const dch = await devCh!;
      const records: StreamRecord[] = [];
      t2.hub.streamLog.onRecord((r) => records.push(r));
      const chClosed = [closeOf(svcCh, 10_000), closeOf(dch, 10_000)];
      const connClosed = [devConn, svcConn].map((c) => within(once(c, 'close'), 10_000, 'a connection close'));
      await within(t2.hub.stop(), 10_000, 'the hub to stop');
      expect(await Promise.all(chClosed)).toEqual([1001, 1001]);
      expect((await Promise.all(connClosed)).map(([code]) => code)).toEqual([1001, 1001]);
      expect(t2.hub.relayMux!.connectionCount()).toBe(0);
      expect(records.find((r) => r.streamId === streamId)).toMatchObject({ result: 'error', code: 'SHUTTING_DOWN', closedBy: 'hub' });
    } finally {
      dev.mqtt.end(true);
      await t2.stop();
    }
  });
});

describe('hub stop, an OPEN still waiting for the device', () => {
  it('is refused with SHUTTING_DOWN, as the REST call would be, not left to look like a lost connection', async () => {
    const t2 = await startTestHub();
    const dev = await onlineDevice(t2, 'stop-wait');
    try {
      dev.onRequest = () => null; // the device never answers
      const { conn } = await muxConnect(t2, 'service', t2.token);
      const seen = dev.requests.length;
      const refused = codeOf(conn.open({ device: 'stop-wait', service: 'echo', timeoutMs: 120_000 }, { timeoutMs: 130_000 }));
      await until(() => dev.requests.length > seen, 3000, 'the request at the device');
      await within(t2.hub.stop(), 10_000, 'the hub to stop');
      expect(await refused).toBe('SHUTTING_DOWN');
    } finally {
      dev.mqtt.end(true);
      await t2.stop();
    }
  });
});

describe('logs', () => {
  it('the main hub never logged a secret it was given (keys, device tokens, service and stream tokens)', () => {
    const text = t.logs.text();
    expect(text).toContain('multiplexed connection open'); // the logs are there
    const all = [...secrets, t.token, devA.key, devB.key, ...devA.requests.map((r) => r.token), ...devB.requests.map((r) => r.token)];
    expect(all.length).toBeGreaterThan(50);
    for (const secret of all) expect(text.includes(secret), secret.slice(0, 12)).toBe(false);
  });
});
