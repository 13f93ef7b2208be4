import tls from 'node:tls';
import fc from 'fast-check';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, apiPaths, topics } from '../../protocol/index.js';
import { FuzzStack, pool } from './fuzz-helpers.js';

/**
 * MQTT fuzzing from the device side: 10,000+ generated packets (CONNECT, SUBSCRIBE, PUBLISH,
 * UNSUBSCRIBE; well-formed, bit-flipped, truncated, oversized, random) in sessions on mqtts and on
 * the /mqtt WebSocket of a real hub, in batches. Each session ends with PINGREQ, so its end is an
 * event (PINGRESP or the broker closing). Checks: a CONNECT with wrong credentials gets a CONNACK
 * naming the refusal; a subscription outside the device's own request topic is never granted; no
 * session ever receives another device's messages; after each batch the real agent is still online
 * (no forged status or will reached it), both processes live, and the established stream echoes.
 */

const DEVICES = ['fuzz-mqtt-0', 'fuzz-mqtt-1', 'fuzz-mqtt-2'];
const BATCHES = 80;
const SESSIONS_PER_BATCH = 25;
const MAX_PACKET = 16 * 1024;

let stack: FuzzStack;
let session: Buffer | undefined;
let packetsSent = 0;

beforeAll(async () => {
  stack = await new FuzzStack().start({ mqtts: true, extraDevices: DEVICES, limits: { mqttMaxPacketBytes: MAX_PACKET } });
}, 180_000);
afterAll(async () => {
  await stack?.stop();
}, 60_000);

const AGENT = FuzzStack.AGENT;
const device = fc.integer({ min: 0, max: DEVICES.length - 1 });
const topicFor = (own: string) =>
  fc.oneof(
    fc.constantFrom(
      topics.status(own), topics.streamResponse(own), topics.streamResponse(own, 'node-1'), topics.streamRequest(own),
      topics.status(AGENT), topics.streamRequest(AGENT), topics.streamResponse(AGENT), '#', '+/#', 'devstreams/v1/devices/+/status',
      'devstreams/v1/devices/#', `${topics.status(own)}/x`, '$SYS/broker', '', '/', 'a'.repeat(300),
    ),
    fc.string({ maxLength: 40 }),
  );
const payload = fc.oneof(
  fc.constantFrom(
    JSON.stringify({ v: PROTOCOL_VERSION, online: true, openStreams: 0 }),
    JSON.stringify({ v: PROTOCOL_VERSION, online: false }),
    JSON.stringify({ v: PROTOCOL_VERSION, streamId: 'A'.repeat(22), status: 200, code: 'OK', reason: 'ok' }),
    '{', '', 'null',
  ),
  fc.string({ maxLength: 100 }),
  fc.integer({ min: 8 * 1024 - 20, max: 9 * 1024 }).map((n) => 'x'.repeat(n)),
);

interface SessionPlan {
  ws: boolean;
  device: number;
  connect: { clientId: number | string; username: number | string | null; password: 'key' | 'wrong' | null; version: 3 | 4 | 5; keepalive: number; clean: boolean; will: { topic: string; payload: string; qos: 0 | 1; retain: boolean } | null };
  packets: Array<{ kind: 'subscribe'; topic: string; qos: 0 | 1 | 2 } | { kind: 'publish'; topic: string; payload: string; qos: 0 | 1; retain: boolean } | { kind: 'unsubscribe'; topic: string } | { kind: 'flip'; which: number; at: number; xor: number }>;
  trailer: { kind: 'none' } | { kind: 'random'; bytes: Uint8Array } | { kind: 'truncate'; keep: number } | { kind: 'oversize' };
}

const plan: fc.Arbitrary<SessionPlan> = device.chain((d) => {
  const own = DEVICES[d]!;
  return fc.record({
    ws: fc.boolean(),
    device: fc.constant(d),
    connect: fc.record({
      clientId: fc.oneof({ weight: 8, arbitrary: fc.constant(d) }, { weight: 1, arbitrary: fc.constantFrom(AGENT, '', 'x'.repeat(70), 'other') }),
      username: fc.oneof({ weight: 8, arbitrary: fc.constant(d) }, { weight: 1, arbitrary: fc.constantFrom(AGENT, null, '', '../x', 'ghost') }),
      password: fc.oneof({ weight: 6, arbitrary: fc.constant<'key'>('key') }, { weight: 1, arbitrary: fc.constantFrom<'wrong' | null>('wrong', null) }),
      version: fc.constantFrom<3 | 4 | 5>(4, 4, 4, 4, 3, 5),
      keepalive: fc.constantFrom(0, 30, 65535),
      clean: fc.boolean(),
      will: fc.option(fc.record({ topic: topicFor(own), payload, qos: fc.constantFrom<0 | 1>(0, 1), retain: fc.boolean() }), { freq: 3 }),
    }),
    packets: fc.array(
      fc.oneof(
        fc.record({ kind: fc.constant<'subscribe'>('subscribe'), topic: topicFor(own), qos: fc.constantFrom<0 | 1 | 2>(0, 1, 2) }),
        fc.record({ kind: fc.constant<'publish'>('publish'), topic: topicFor(own), payload, qos: fc.constantFrom<0 | 1>(0, 1), retain: fc.boolean() }),
        fc.record({ kind: fc.constant<'unsubscribe'>('unsubscribe'), topic: topicFor(own) }),
        fc.record({ kind: fc.constant<'flip'>('flip'), which: fc.nat(), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
      ),
      { minLength: 2, maxLength: 6 },
    ),
    trailer: fc.oneof(
      { weight: 6, arbitrary: fc.constant<{ kind: 'none' }>({ kind: 'none' }) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => ({ kind: 'random' as const, bytes })) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 }).map((keep) => ({ kind: 'truncate' as const, keep })) },
      { weight: 1, arbitrary: fc.constant<{ kind: 'oversize' }>({ kind: 'oversize' }) },
    ),
  });
});

let messageId = 1;
const nextId = (): number => (messageId = (messageId % 65535) + 1);

/** The session's bytes, and the number of packets (inputs) in it. */
function render(p: SessionPlan): { bytes: Buffer; count: number; connectWellFormed: boolean } {
  const own = DEVICES[p.device]!;
  const pick = (v: number | string | null): string | undefined => (v === null ? undefined : typeof v === 'number' ? DEVICES[v] : v);
  const c = p.connect;
  const connect: Packet = {
    cmd: 'connect', protocolId: c.version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: c.version, clean: c.clean, keepalive: c.keepalive,
    clientId: pick(c.clientId) ?? '',
    ...(pick(c.username) !== undefined ? { username: pick(c.username) } : {}),
    ...(c.password === 'key' ? { password: Buffer.from(stack.keys.get(own)!) } : c.password === 'wrong' ? { password: Buffer.from('w'.repeat(43)) } : {}),
    ...(c.will ? { will: { topic: c.will.topic, payload: Buffer.from(c.will.payload), qos: c.will.qos, retain: c.will.retain } } : {}),
  } as Packet;
  const frames: Buffer[] = [];
  let connectWellFormed = true;
  try {
    frames.push(mqttPacket.generate(connect));
  } catch {
    connectWellFormed = false;
    frames.push(Buffer.from([0x10, 0x00]));
  }
  const good: Buffer[] = [];
  for (const q of p.packets) {
    let packet: Packet | null = null;
    if (q.kind === 'subscribe') packet = { cmd: 'subscribe', messageId: nextId(), subscriptions: [{ topic: q.topic, qos: q.qos }] } as Packet;
    if (q.kind === 'publish') packet = { cmd: 'publish', topic: q.topic, payload: Buffer.from(q.payload), qos: q.qos, retain: q.retain, dup: false, ...(q.qos > 0 ? { messageId: nextId() } : {}) } as Packet;
    if (q.kind === 'unsubscribe') packet = { cmd: 'unsubscribe', messageId: nextId(), unsubscriptions: [q.topic] } as Packet;
    if (q.kind === 'flip') {
      // A copy of an earlier packet with one body byte changed: framing intact, content wrong.
      const base = good.length > 0 ? good[q.which % good.length]! : frames[0]!;
      const copy = Buffer.from(base);
      let headerLen = 2;
      while (headerLen < copy.length && (copy[headerLen - 1]! & 0x80) !== 0) headerLen++;
      if (copy.length > headerLen) {
        const at = headerLen + (q.at % (copy.length - headerLen));
        copy[at] = copy[at]! ^ q.xor;
      }
      frames.push(copy);
      continue;
    }
    try {
      const b = mqttPacket.generate(packet!);
      frames.push(b);
      good.push(b);
    } catch {
      /* an unencodable field: counted as sent, nothing to send */
    }
  }
  frames.push(mqttPacket.generate({ cmd: 'pingreq' } as Packet));
  const t = p.trailer;
  if (t.kind === 'random') frames.push(Buffer.from(t.bytes));
  if (t.kind === 'truncate') frames.push(mqttPacket.generate({ cmd: 'publish', topic: topics.status(own), payload: Buffer.alloc(64), qos: 0, retain: false, dup: false } as Packet).subarray(0, t.keep));
  if (t.kind === 'oversize') frames.push(Buffer.from([0x30, 0xff, 0xff, 0x7f])); // PUBLISH declaring 2 MiB
  return { bytes: Buffer.concat(frames), count: 2 + p.packets.length + (t.kind === 'none' ? 0 : 1), connectWellFormed };
}

interface Outcome {
  connack: number | null;
  pingresp: boolean;
  subacks: number[][];
  publishes: string[];
}

function run(p: SessionPlan, bytes: Buffer): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const out: Outcome = { connack: null, pingresp: false, subacks: [], publishes: [] };
    const parser = mqttPacket.parser({ protocolVersion: p.connect.version === 5 ? 5 : 4 });
    let finished = false;
    let close: () => void = () => {};
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      close();
      resolve(out);
    };
    const timer = setTimeout(() => {
      finished = true;
      close();
      reject(new Error(`session neither answered PINGREQ nor was closed within 10 s: ${JSON.stringify(p).slice(0, 400)}`));
    }, 10_000);
    parser.on('packet', (pk: Packet) => {
      if (pk.cmd === 'connack') out.connack = (pk as { returnCode?: number; reasonCode?: number }).returnCode ?? (pk as { reasonCode?: number }).reasonCode ?? 0;
      if (pk.cmd === 'suback') out.subacks.push((pk as { granted: number[] }).granted);
      if (pk.cmd === 'publish') out.publishes.push((pk as { topic: string }).topic);
      if (pk.cmd === 'pingresp') {
        out.pingresp = true;
        finish();
      }
    });
    parser.on('error', () => finish());
    if (p.ws) {
      const ws = new WebSocket(`wss://localhost:${stack.port}${apiPaths.mqtt}`, 'mqtt', { ca: stack.ca, perMessageDeflate: false });
      close = () => ws.terminate();
      ws.on('open', () => ws.send(bytes));
      ws.on('message', (d: Buffer) => parser.parse(d));
      ws.on('error', () => finish());
      ws.on('close', () => finish());
    } else {
      const s = tls.connect({ host: '127.0.0.1', servername: 'localhost', port: stack.mqttsPort, ca: stack.ca, ...(session ? { session } : {}) });
      close = () => s.destroy();
      s.on('session', (x: Buffer) => (session = x));
      s.on('secureConnect', () => s.write(bytes));
      s.on('data', (d: Buffer) => parser.parse(d));
      s.on('error', () => {});
      s.on('close', () => finish());
    }
  });
}

function problemsOf(p: SessionPlan, o: Outcome, connectWellFormed: boolean): string[] {
  const own = DEVICES[p.device]!;
  const c = p.connect;
  const problems: string[] = [];
  const credsOk = c.password === 'key' && c.username === p.device && c.clientId === p.device;
  if (connectWellFormed && c.version === 4 && !credsOk && o.connack === 0) problems.push('a CONNECT with wrong credentials was accepted');
  // When nothing else in the session can end it first (a later bad packet may close it while the
  // credentials are still being checked), a refused CONNECT must be answered with its return code.
  // CONNECTs the MQTT parser itself rejects (3.1.1 section 3.1.2) are malformed, not refused: closed without CONNACK.
  // A will is checked by the broker too and may end the connection first; those are not counted here.
  const parserRejects = (c.clientId === '' && !c.clean) || (c.password !== null && c.username === null) || c.will !== null;
  const clean = !parserRejects && p.trailer.kind === 'none' && p.packets.every((q) => q.kind !== 'flip');
  if (clean && connectWellFormed && c.version === 4 && !credsOk && o.connack === null) problems.push(`a CONNECT with wrong credentials was closed without a CONNACK return code: ${JSON.stringify(c)}`);
  // The broker grants only the device's own request topic (a bit-flipped copy may have become one).
  const mayGrant = p.packets.some((q) => q.kind === 'flip' || (q.kind === 'subscribe' && q.topic === topics.streamRequest(own)));
  if (!mayGrant && o.subacks.flat().some((g) => g !== 128)) problems.push(`a subscription was granted: ${JSON.stringify(p.packets)}`);
  for (const t of o.publishes) if (t !== topics.streamRequest(own)) problems.push(`received a message on ${t}`);
  return problems;
}

describe('MQTT fuzzing from the device side (fast-check, 10,000+ packets)', { timeout: 600_000 }, () => {
  it('refusals are CONNACK codes, SUBACK 0x80 or a closed connection; isolation holds; nothing else changes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(plan, { minLength: SESSIONS_PER_BATCH, maxLength: SESSIONS_PER_BATCH }), async (batch) => {
        const problems = await pool(batch, 8, async (p) => {
          const { bytes, count, connectWellFormed } = render(p);
          packetsSent += count;
          return problemsOf(p, await run(p, bytes), connectWellFormed);
        });
        expect(problems.flat()).toEqual([]);
        await stack.assertHealthy();
      }),
      { numRuns: BATCHES, endOnFailure: true },
    );
    expect(packetsSent).toBeGreaterThanOrEqual(10_000);
    await stack.echo.check(64 * 1024);
  });
});
