import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEVICE_STATUSES, PROTOCOL_VERSION, StreamResponseSchema, apiPaths, hubSubscriptions, topics, type StreamResponse } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { api, startTestHub, type TestHub } from '../hub/helpers.js';
import { CliProcess } from '../helpers/proc.js';
import { echoTarget, type Target } from '../helpers/targets.js';
import { EchoStream } from './fuzz-helpers.js';

/**
 * Stream request fuzzing: 10,000 generated request payloads published on a real agent's request
 * topic through the hub's own broker and control bus, as the hub publishes them (QoS 1), in batches
 * of 100. Every request that names a fresh stream id and the device's own replyTo must be answered
 * with a device status, a code and a non-empty reason; anything else must be dropped quietly. After
 * each batch the agent process lives, the hub answers, and a stream opened before the run echoes.
 */

const BATCHES = 100;
const PER_BATCH = 100;
const DEVICE = 'fuzz-agent';
const NODE = 'fuzz-node';

let t: TestHub;
let agent: CliProcess;
let target: Target;
let client: DevstreamsClient;
let echo: EchoStream;
const answers = new Map<string, StreamResponse>();
let badAnswers: string[] = [];
let unsubscribe: () => Promise<void>;

beforeAll(async () => {
  t = await startTestHub();
  target = await echoTarget();
  const key = t.addDevice(DEVICE);
  writeFileSync(join(t.dir, 'device.key'), key, { mode: 0o600 });
  writeFileSync(join(t.dir, 'ca.pem'), t.ca);
  const config = {
    hub: { url: `wss://localhost:${t.port}/mqtt`, deviceId: DEVICE, keyFile: 'device.key', ca: 'ca.pem' },
    allow: [{ name: 'echo-tcp', port: target.port }, { name: 'echo', builtin: 'echo' }],
    limits: { maxStreams: 16 },
  };
  writeFileSync(join(t.dir, 'agent.yaml'), stringify(config), { mode: 0o600 });
  agent = new CliProcess(['agent', '--config', join(t.dir, 'agent.yaml')]);
  await agent.waitForLog('agent connected', {}, 60_000);
  const deadline = Date.now() + 10_000;
  while (!t.hub.presence.isOnline(DEVICE)) {
    if (Date.now() > deadline) throw new Error('agent not online');
    await new Promise((r) => setTimeout(r, 20));
  }
  client = new DevstreamsClient({ hub: `https://localhost:${t.port}`, token: t.token, ca: t.ca });
  echo = new EchoStream(await client.openStream(DEVICE, 'echo-tcp'));
  await echo.check();
  unsubscribe = await t.hub.bus.subscribe(hubSubscriptions.responses(NODE), (_topic, payload) => {
    const parsed = StreamResponseSchema.safeParse(JSON.parse(payload.toString()));
    if (!parsed.success) return void badAnswers.push(`not a StreamResponse: ${payload.toString().slice(0, 200)}`);
    const r = parsed.data;
    if (!(DEVICE_STATUSES as readonly number[]).includes(r.status) || r.reason.trim() === '' || (r.status === 200) !== (r.code === 'OK')) {
      badAnswers.push(`answer without a usable status, code and reason: ${JSON.stringify(r)}`);
    }
    answers.set(r.streamId, r);
  });
}, 180_000);
afterAll(async () => {
  await unsubscribe?.();
  echo?.close();
  client?.close();
  await agent?.stop();
  await target?.close();
  await t?.stop();
}, 60_000);

let counter = 0;
/** A stream id never used before (the agent ignores repeated ids: QoS 1 may deliver twice). */
const freshId = (): string => `F${(counter++).toString(36).padStart(21, '0')}`;

const OWN_REPLY = topics.streamResponse(DEVICE, NODE);
const field = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 15, arbitrary: good.map((v) => ({ v })) }, { weight: 3, arbitrary: bad.map((v) => ({ v })) }, { weight: 1, arbitrary: fc.constant(null) });
const junk = fc.oneof(fc.string({ maxLength: 40 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.object({ maxDepth: 1 }));
const request = fc.record({
  v: field(fc.constant(PROTOCOL_VERSION), junk),
  streamId: field(fc.constant('FRESH'), fc.oneof(junk, fc.constantFrom('A'.repeat(21), 'A'.repeat(23), '!'.repeat(22)))),
  service: field(fc.constantFrom('echo-tcp', 'echo', 'TARGET_PORT', '127.0.0.1:TARGET_PORT', 'ssh', '22', '10.0.0.1:22', '[::1]:22', 'x'.repeat(262), 'Echo'), junk),
  relayUrl: field(
    fc.constantFrom('RELAY', 'wss://evil.example.com/x', 'ws://localhost/x', 'wss://user:pw@localhost/x', 'https://localhost/x', `wss://localhost:1/${'a'.repeat(2100)}`),
    junk,
  ),
  token: field(fc.constantFrom('t'.repeat(43), 'short', 'x'.repeat(600)), junk),
  expiresAt: field(fc.constantFrom('SOON', 'PAST', 0, -1, 1.5, Number.MAX_SAFE_INTEGER), junk),
  replyTo: field(
    fc.oneof({ weight: 6, arbitrary: fc.constant(OWN_REPLY) }, { weight: 1, arbitrary: fc.constantFrom(topics.streamResponse('other', NODE), topics.status(DEVICE), '#', `${OWN_REPLY}/x`) }),
    junk,
  ),
  extra: fc.option(fc.tuple(fc.string({ maxLength: 10 }), junk), { freq: 8 }),
  raw: fc.oneof(
    { weight: 12, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)), fc.integer({ min: 8 * 1024, max: 9 * 1024 }).map((n) => JSON.stringify({ streamId: 'x'.repeat(n) }))) },
  ),
});
type Req = typeof request extends fc.Arbitrary<infer T> ? T : never;

/** The payload, and the stream id that must be answered (or null when no answer is owed). */
function render(r: Req): { payload: Buffer; mustAnswer: string | null } {
  if (r.raw !== null) return { payload: Buffer.from(r.raw as string | Buffer), mustAnswer: null };
  const obj: Record<string, unknown> = {};
  let id: string | null = null;
  const set = (k: string, f: { v: unknown } | null, map: (v: unknown) => unknown = (v) => v): void => {
    if (f !== null) obj[k] = map(f.v);
  };
  set('v', r.v);
  set('streamId', r.streamId, (v) => (v === 'FRESH' ? (id = freshId()) : v));
  set('service', r.service, (v) => (typeof v === 'string' ? v.replace('TARGET_PORT', String(target.port)) : v));
  set('relayUrl', r.relayUrl, (v) => (v === 'RELAY' ? new URL(apiPaths.relay(id ?? 'A'.repeat(22)), `wss://localhost:${t.port}`).href : v));
  set('token', r.token);
  set('expiresAt', r.expiresAt, (v) => (v === 'SOON' ? Date.now() + 30_000 : v === 'PAST' ? Date.now() - 120_000 : v));
  set('replyTo', r.replyTo);
  if (r.extra) obj[r.extra[0] || 'extra'] = r.extra[1];
  const mustAnswer = id !== null && obj.replyTo === OWN_REPLY ? id : null;
  return { payload: Buffer.from(JSON.stringify(obj)), mustAnswer };
}

describe('stream request fuzzing against a real agent (fast-check, 10,000 requests)', { timeout: 600_000 }, () => {
  it('owed answers come with status, code and reason; nothing crashes; the established stream survives', async () => {
    let published = 0;
    let owed = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: PER_BATCH, maxLength: PER_BATCH }), async (batch) => {
        badAnswers = [];
        const waitFor: string[] = [];
        await Promise.all(
          batch.map(async (r) => {
            const { payload, mustAnswer } = render(r);
            if (mustAnswer) waitFor.push(mustAnswer);
            await t.hub.bus.publish(topics.streamRequest(DEVICE), payload, { qos: 1 });
          }),
        );
        published += batch.length;
        owed += waitFor.length;
        const deadline = Date.now() + 20_000;
        while (waitFor.some((id) => !answers.has(id))) {
          if (Date.now() > deadline) throw new Error(`no answer for ${waitFor.filter((id) => !answers.has(id)).length} owed requests`);
          await new Promise((r) => setTimeout(r, 10));
        }
        expect(badAnswers).toEqual([]);
        if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`agent died:\n${agent.lines.slice(-20).join('\n')}`);
        expect((await api(t, 'GET', apiPaths.devices)).status).toBe(200);
        expect(t.hub.presence.isOnline(DEVICE)).toBe(true);
        await echo.check(1024);
      }),
      { numRuns: BATCHES, endOnFailure: true },
    );
    expect(published).toBeGreaterThanOrEqual(10_000);
    expect(owed).toBeGreaterThan(1000);
    await echo.check(64 * 1024);
  });
});
