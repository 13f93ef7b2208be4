import { connect as tlsConnect } from 'node:tls';
import type { MqttClient } from 'mqtt';
import type { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EOF_FRAME, STREAM_ID_HEADER, WS_SUBPROTOCOL, apiPaths, type StreamRequest, type StreamResponse } from '../../protocol/index.js';
import { HubLimitsSchema } from '../../hub/config.js';
import { closed, connectDevice, dialRelay, fakeAgent, nextMessage, recordOf, startTestHub, until, type TestHub } from './helpers.js';

// The open-and-connect upgrade (hub/stream-connect.ts): one WebSocket request with the service
// token opens the stream and joins it as its service side.

let t: TestHub;
let device: MqttClient;
let requests: StreamRequest[];
/** Device legs dialled by the fake agent, by stream id. */
const deviceLegs = new Map<string, Promise<WebSocket>>();
/** How the fake agent answers a request; null: never. Default: 200, then it dials and echoes. */
let answer: (req: StreamRequest) => Omit<StreamResponse, 'v' | 'streamId'> | null;
let answerDelayMs = 0;

beforeAll(async () => {
  t = await startTestHub();
  const key = t.addDevice('conn-dev');
  t.addDevice('conn-offline');
  device = await connectDevice(t, 'conn-dev', key);
  answer = (req) => (req.service === 'telnet' ? { status: 403, code: 'SERVICE_DENIED', reason: 'service "telnet" is not in the allowlist' } : { status: 200, code: 'OK', reason: 'ok' });
  requests = await fakeAgent(device, 'conn-dev', (req) => {
    const a = answer(req);
    if (a?.status === 200) deviceLegs.set(req.streamId, dialEcho(req, answerDelayMs));
    return a && answerDelayMs > 0 ? null : a;
  });
  device.on('message', () => undefined);
  await until(() => t.hub.presence.isOnline('conn-dev'), 3000, 'device online');
});
afterAll(async () => {
  await device.endAsync(true);
  await t.stop();
});

/** The device side: (after `delayMs`, answering 200 itself then) dials the relay and echoes every frame. */
async function dialEcho(req: StreamRequest, delayMs: number): Promise<WebSocket> {
  if (delayMs > 0) {
    await new Promise((r) => setTimeout(r, delayMs));
    await device.publishAsync(req.replyTo, JSON.stringify({ v: 1, streamId: req.streamId, status: 200, code: 'OK', reason: 'ok' }), { qos: 1 });
  }
  const d = await dialRelay(t, req.relayUrl, req.token);
  if (!('ws' in d)) throw Object.assign(new Error('device leg refused'), { refusal: d });
  d.ws.on('message', (data: Buffer, isBinary: boolean) => d.ws.send(data, { binary: isBinary }));
  return d.ws;
}

const url = (device_: string, query: string): string => `wss://localhost:${t.port}${apiPaths.openStream(device_)}/connect?${query}`;

/** A raw open-and-connect request for conn-dev's echo service. */
function upgradeRequest(): string {
  return (
    `GET ${apiPaths.connectStream('conn-dev', { service: 'echo' })} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${WS_SUBPROTOCOL}\r\n` +
    `Authorization: Bearer ${t.token}\r\n\r\n`
  );
}

describe('open-and-connect', () => {
  it('opens the stream and joins it in one request: bytes and EOF both ways, the stream id in the 101, recorded ok', async () => {
    expect(apiPaths.connectStream('conn-dev', { service: 'echo', timeoutMs: 5000 })).toBe('/api/v1/devices/conn-dev/streams/connect?service=echo&timeoutMs=5000');
    const seen = requests.length;
    const r = await dialRelay(t, url('conn-dev', 'service=echo&timeoutMs=5000'), t.token);
    if (!('ws' in r)) throw new Error(`refused: ${JSON.stringify(r.body)}`);
    const streamId = r.headers[STREAM_ID_HEADER] as string;
    expect(streamId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(requests.slice(seen).map((q) => [q.streamId, q.service])).toEqual([[streamId, 'echo']]);
    expect(r.ws.protocol).toBe(WS_SUBPROTOCOL);
    const back = nextMessage(r.ws);
    r.ws.send(Buffer.from('over one connection'));
    expect((await back).data.toString()).toBe('over one connection');
    const eof = nextMessage(r.ws);
    r.ws.send(EOF_FRAME);
    expect((await eof).data.toString()).toBe(EOF_FRAME);
    r.ws.close(1000, 'done');
    const dev = await deviceLegs.get(streamId)!;
    expect((await closed(dev)).code).toBe(1000);
    const rec = await recordOf(t, streamId);
    expect(rec).toMatchObject({ device: 'conn-dev', service: 'echo', result: 'ok', closedBy: 'service', bytesToDevice: 19, bytesFromDevice: 19 });
    expect(rec?.requestedBy).toBeTruthy();
  });

  it.each([
    ['no token', 'conn-dev', 'service=echo', null, undefined, 401, 'UNAUTHORIZED'],
    ['a wrong token', 'conn-dev', 'service=echo', 'not-a-token', undefined, 401, 'UNAUTHORIZED'],
    ['another subprotocol', 'conn-dev', 'service=echo', undefined, 'other.v9', 426, 'VERSION_MISMATCH'],
    ['no service', 'conn-dev', 'timeoutMs=5000', undefined, undefined, 400, 'BAD_REQUEST'],
    ['a timeout that is not a number', 'conn-dev', 'service=echo&timeoutMs=soon', undefined, undefined, 400, 'BAD_REQUEST'],
    ['a timeout below the minimum', 'conn-dev', 'service=echo&timeoutMs=5', undefined, undefined, 400, 'BAD_REQUEST'],
    ['a repeated service', 'conn-dev', 'service=echo&service=ssh', undefined, undefined, 400, 'BAD_REQUEST'],
    ['an unknown parameter', 'conn-dev', 'service=echo&x=1', undefined, undefined, 400, 'BAD_REQUEST'],
    ['a bad device id encoding', '%E0%A4%A', 'service=echo', undefined, undefined, 400, 'BAD_REQUEST'],
    ['an unknown device', 'nobody-here', 'service=echo', undefined, undefined, 404, 'DEVICE_UNKNOWN'],
    ['an offline device', 'conn-offline', 'service=echo', undefined, undefined, 503, 'DEVICE_OFFLINE'],
    ['a service the device refuses', 'conn-dev', 'service=telnet', undefined, undefined, 403, 'SERVICE_DENIED'],
  ] as const)('refuses %s before any upgrade, with its status and code', async (_what, dev, query, token, protocol, status, code) => {
    const seen = requests.length;
    const path = dev.startsWith('%') ? `wss://localhost:${t.port}/api/v1/devices/${dev}/streams/connect?${query}` : url(dev, query);
    const r = await dialRelay(t, path, token === undefined ? t.token : token, protocol ? { protocol } : {});
    expect('ws' in r).toBe(false);
    if ('ws' in r) return;
    expect(r.status).toBe(status);
    expect(r.body.error).toMatchObject({ code, status });
    if (code === 'SERVICE_DENIED') expect(r.body.error.reason).toBe('service "telnet" is not in the allowlist');
    // Only a request that passed every check of the hub reached the device.
    expect(requests.length - seen).toBe(code === 'SERVICE_DENIED' ? 1 : 0);
  });

  it('a bad timeoutMs is blamed on the query, not on a body', async () => {
    const r = await dialRelay(t, url('conn-dev', 'service=echo&timeoutMs=soon'), t.token);
    if ('ws' in r) throw new Error('upgraded');
    expect(r.body.error.reason).toMatch(/^invalid query: timeoutMs: /);
  });

  it('waits for a slow device past the connection deadlines of a hub with short ones', async () => {
    const short = await startTestHub({ limits: { ...HubLimitsSchema.parse({}), authTimeoutMs: 200 } });
    const key = short.addDevice('slow-dev');
    const slow = await connectDevice(short, 'slow-dev', key);
    try {
      await fakeAgent(slow, 'slow-dev', (req) => {
        setTimeout(() => {
          void slow.publishAsync(req.replyTo, JSON.stringify({ v: 1, streamId: req.streamId, status: 200, code: 'OK', reason: 'ok' }), { qos: 1 });
          void dialRelay(short, req.relayUrl, req.token).then((d) => {
            if ('ws' in d) d.ws.on('message', (data: Buffer, isBinary: boolean) => d.ws.send(data, { binary: isBinary }));
          });
        }, 1200); // six times the auth timeout, three times the request timeout
        return null;
      });
      await until(() => short.hub.presence.isOnline('slow-dev'), 3000, 'device online');
      const r = await dialRelay(short, `wss://localhost:${short.port}${apiPaths.connectStream('slow-dev', { service: 'echo' })}`, short.token);
      if (!('ws' in r)) throw new Error(`refused: ${JSON.stringify(r.body)}`);
      const back = nextMessage(r.ws);
      r.ws.send(Buffer.from('late but there'));
      expect((await back).data.toString()).toBe('late but there');
      r.ws.close(1000);
      await closed(r.ws);
    } finally {
      await slow.endAsync(true);
      await short.stop();
    }
  });

  it('answers 504 DEVICE_TIMEOUT when the device does not answer by the deadline', async () => {
    answer = () => null;
    try {
      const r = await dialRelay(t, url('conn-dev', 'service=echo&timeoutMs=1000'), t.token);
      expect('ws' in r).toBe(false);
      if (!('ws' in r)) expect(r).toMatchObject({ status: 504, body: { error: { code: 'DEVICE_TIMEOUT' } } });
    } finally {
      answer = () => ({ status: 200, code: 'OK', reason: 'ok' });
    }
  });

  it('keeps bytes a client sends before the 101 (read while the device answers) and delivers them first', async () => {
    answerDelayMs = 300;
    try {
      const socket = tlsConnect({ host: '127.0.0.1', port: t.port, servername: 'localhost', ca: t.ca });
      await new Promise<void>((r, j) => socket.once('secureConnect', () => r()).once('error', j));
      // A masked binary frame (all-zero key) right behind the request, before any answer.
      const frame = (text: string): Buffer => Buffer.concat([Buffer.from([0x82, 0x80 | text.length, 0, 0, 0, 0]), Buffer.from(text)]);
      socket.write(upgradeRequest());
      socket.write(frame('early'));
      const got: Buffer[] = [];
      socket.on('data', (c: Buffer) => got.push(c));
      await until(() => Buffer.concat(got).includes('early'), 5000, 'the early bytes echoed');
      socket.write(frame('later'));
      await until(() => Buffer.concat(got).includes('later'), 5000, 'the later bytes echoed');
      const text = Buffer.concat(got).toString('latin1');
      expect(text).toMatch(/^HTTP\/1\.1 101 /);
      expect(text.indexOf('early')).toBeLessThan(text.indexOf('later'));
      socket.destroy();
    } finally {
      answerDelayMs = 0;
    }
  });

  it('ends the stream at once (unpaired, PEER_GONE) when the service side leaves before the device answers', async () => {
    answerDelayMs = 400;
    const seen = requests.length;
    try {
      const socket = tlsConnect({ host: '127.0.0.1', port: t.port, servername: 'localhost', ca: t.ca });
      await new Promise<void>((r, j) => socket.once('secureConnect', () => r()).once('error', j));
      socket.write(upgradeRequest());
      await until(() => requests.length > seen, 3000, 'the request at the device');
      socket.end();
      await new Promise((r) => socket.once('close', r));
      const streamId = requests[seen]!.streamId;
      const rec = await recordOf(t, streamId);
      expect(rec).toMatchObject({ result: 'unpaired', code: 'PEER_GONE', closedBy: 'service' });
      // The device's side, dialled after its answer, finds the stream ended.
      await expect(deviceLegs.get(streamId)!).rejects.toMatchObject({ refusal: { status: 410 } });
    } finally {
      answerDelayMs = 0;
    }
  });
});
