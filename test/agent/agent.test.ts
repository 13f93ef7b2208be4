import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent as HttpAgent } from 'node:http';
import { Agent } from '../../agent/agent.js';
import { RelayDialer } from '../../agent/relay-dialer.js';
import { hubTlsContext } from '../../agent/hub-tls.js';
import { loadAgentConfig } from '../../agent/config.js';
import { StreamClosedError, newSecret, topics } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';
import { TargetServer, captureLog, closedPort, collect } from './helpers.js';

/**
 * The agent against a real broker (Aedes over wss, the hub's shape) and a stand-in relay, with real
 * local TCP targets. The test plays both the hub (requests, relay) and the service (stream bytes).
 */
const DEVICE = 'pi-test';
let tls: TestTls;
let hub: FakeHub;
let target: TargetServer;
let deadPort: number;
let key: string;
let agent: Agent;
const logs = captureLog();
const tokens: string[] = [];

function request(service: string, over: Parameters<FakeHub['request']>[2] = {}) {
  const req = hub.request(DEVICE, service, over);
  tokens.push(req.token);
  return req;
}

async function ask(service: string, over: Parameters<FakeHub['request']>[2] = {}) {
  const req = request(service, over);
  await hub.send(DEVICE, req);
  return { req, res: await hub.response(req.streamId) };
}

beforeAll(async () => {
  tls = makeTestTls();
  hub = new FakeHub(tls);
  await hub.start();
  key = hub.addDevice(DEVICE);
  target = new TargetServer();
  await target.start();
  deadPort = await closedPort();
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-agent-'));
  writeFileSync(join(dir, 'pi-test.key'), `${key}\n`);
  writeFileSync(
    join(dir, 'agent.yaml'),
    [
      'hub:',
      `  url: ${hub.url}`,
      `  deviceId: ${DEVICE}`,
      '  keyFile: pi-test.key',
      `  ca: ${tls.caFile}`,
      '  reconnect: { initialDelayMs: 200, maxDelayMs: 200 }',
      'allow:',
      `  - { name: web, port: ${target.port} }`,
      `  - { name: dead, port: ${deadPort} }`,
      '  - { name: echo, builtin: echo }',
      'limits: { maxStreams: 2, connectTimeoutMs: 2000 }',
    ].join('\n'),
  );
  agent = new Agent({ config: loadAgentConfig(join(dir, 'agent.yaml')), log: logs.log });
  await agent.start();
  await agent.waitConnected();
});

afterAll(async () => {
  await agent?.stop();
  await target?.stop();
  await hub?.stop();
});

/** Sends `text` on a relay WebSocket the dialer returned, sees it arrive on the hub's device side, and closes both. */
async function carriesToDeviceSide(ws: Awaited<ReturnType<RelayDialer['dial']>>, streamId: string, text: string): Promise<void> {
  ws.resume();
  const side = await hub.deviceSide(streamId);
  const got = collect(side);
  ws.send(Buffer.from(text), { binary: true });
  await got.until(text);
  ws.close(1000);
  side.destroy();
}

/** Each stream test leaves no stream behind, so the next starts from zero. */
async function noStreamsLeft(): Promise<void> {
  try {
    await vi.waitFor(() => expect(agent.openStreams).toBe(0), { timeout: 3000, interval: 10 });
  } catch (err) {
    console.log(logs.lines.slice(-15).map((l) => JSON.stringify(l)).join('\n'));
    throw err;
  }
}

describe('agent with a real broker and relay', () => {
  it('connects, logs "agent connected" and publishes a retained online status', async () => {
    await logs.waitFor((l) => l.msg === 'agent connected' && l.deviceId === DEVICE);
    const m = await hub.waitFor((p) => p.topic === topics.status(DEVICE) && p.retain);
    expect(JSON.parse(m.payload)).toMatchObject({ v: 1, online: true, openStreams: 0, agentVersion: expect.any(String) });
  });

  it('200: bridges real bytes both ways to an allowed TCP service, EOF included', async () => {
    const before = target.connections;
    const { req, res } = await ask('web');
    expect(res).toMatchObject({ status: 200, code: 'OK', reason: 'accepted', topic: req.replyTo });
    expect(target.connections).toBe(before + 1);
    const side = await hub.deviceSide(req.streamId);
    const got = collect(side);
    await got.until('hello\n');
    side.write('ping over the tunnel');
    await got.until('ping over the tunnel');
    side.end();
    expect(await got.ended).toBe('hello\nping over the tunnel');
    await target.idle();
    await noStreamsLeft();
  });

  it('200 for PORT and HOST:PORT specs naming an entry exactly', async () => {
    for (const spec of [String(target.port), `127.0.0.1:${target.port}`]) {
      const { req, res } = await ask(spec);
      expect(res.status).toBe(200);
      const side = await hub.deviceSide(req.streamId);
      const got = collect(side);
      await got.until('hello\n');
      side.end();
      await got.ended;
    }
    await noStreamsLeft();
  });

  it('403 for a service not on the allowlist, and neither the target nor the relay is dialled', async () => {
    const before = target.connections;
    const hubBefore = hub.tlsConnections;
    for (const spec of ['telnet', `localhost:${target.port}`, `127.0.0.2:${target.port}`, '2222']) {
      const { res } = await ask(spec);
      expect(res).toMatchObject({ status: 403, code: 'SERVICE_DENIED' });
    }
    expect(hub.tlsConnections).toBe(hubBefore);
    // A later allowed request is dialled: had a refused one been dialled, it would show up first.
    const { req } = await ask('web');
    expect(target.connections).toBe(before + 1);
    (await hub.deviceSide(req.streamId)).destroy();
    await noStreamsLeft();
  });

  it('503 when the target port is closed, naming host:port and the errno code', async () => {
    const openBefore = hub.tlsConnections - hub.tlsClosed;
    const { res } = await ask('dead');
    expect(res).toMatchObject({ status: 503, code: 'TARGET_UNREACHABLE' });
    expect(res.reason).toContain(`127.0.0.1:${deadPort}`);
    expect(res.reason).toContain('ECONNREFUSED');
    await noStreamsLeft();
    // The relay connection opened while the target was dialled is closed again, unused.
    await vi.waitFor(() => expect(hub.tlsConnections - hub.tlsClosed).toBe(openBefore), { timeout: 5000 });
  });

  it('429 over maxStreams, and the status reports the open streams', async () => {
    const from = hub.published.length;
    const a = await ask('echo');
    const b = await ask('echo');
    expect([a.res.status, b.res.status]).toEqual([200, 200]);
    const c = await ask('echo');
    expect(c.res).toMatchObject({ status: 429, code: 'LIMIT_EXCEEDED' });
    expect(c.res.reason).toBe('device has 2 streams open or being set up (limits.maxStreams: 2 in the agent config)');
    const status = await hub.waitFor((p) => p.topic === topics.status(DEVICE) && p.payload.includes('"openStreams":2'), from);
    expect(JSON.parse(status.payload)).toMatchObject({ online: true, openStreams: 2 });
    for (const s of [a, b]) (await hub.deviceSide(s.req.streamId)).end();
    await noStreamsLeft();
    const d = await ask('echo');
    expect(d.res.status).toBe(200);
    (await hub.deviceSide(d.req.streamId)).end();
    await noStreamsLeft();
  });

  it('400 for an expired request, but tolerates 30 s of clock skew', async () => {
    const expired = await ask('echo', { expiresAt: Date.now() - 31_000 });
    expect(expired.res).toMatchObject({ status: 400, code: 'BAD_REQUEST', reason: 'request expired' });
    const skewed = await ask('echo', { expiresAt: Date.now() - 20_000 });
    expect(skewed.res.status).toBe(200);
    (await hub.deviceSide(skewed.req.streamId)).end();
    await noStreamsLeft();
  });

  it('400 for a relay URL that is not wss: on the hub host, before any dial', async () => {
    const before = target.connections;
    const evil = await ask('web', { relayUrl: 'wss://evil.example/api/v1/streams/x/connect' });
    expect(evil.res).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect(evil.res.reason).toMatch(/^relayUrl: host evil\.example/);
    const plain = await ask('web', { relayUrl: `ws://127.0.0.1:${hub.port}/x` });
    expect(plain.res.reason).toMatch(/^relayUrl: scheme must be wss:/);
    expect(target.connections).toBe(before);
  });

  it('400 naming the field for a request that fails the schema', async () => {
    const bad = request('web');
    await hub.send(DEVICE, JSON.stringify({ ...bad, token: 'short', extra: 1 }));
    const res = await hub.response(bad.streamId);
    expect(res).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect(res.reason).toContain('token:');
    expect(res.reason).toContain('extra');
  });

  it('does not answer a foreign replyTo or a payload it cannot read', async () => {
    const from = hub.published.length;
    const foreign = request('echo', { replyTo: topics.streamResponse('other-device', 'node1') });
    await hub.send(DEVICE, foreign);
    await hub.send(DEVICE, 'this is not JSON');
    // Requests are handled in order: once a later one is answered, the earlier ones are done.
    const later = await ask('telnet');
    expect(later.res.status).toBe(403);
    expect(hub.published.slice(from).filter((p) => p.topic.includes('/response') && p.payload.includes(foreign.streamId))).toEqual([]);
    expect(hub.published.slice(from).filter((p) => p.topic.includes('/response'))).toHaveLength(1);
    await logs.waitFor((l) => l.msg === 'stream request with a foreign replyTo dropped');
    await logs.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('malformed stream request dropped'));
  });

  it('echo builtin: bytes come back, then EOF, then a clean close', async () => {
    const { req, res } = await ask('echo');
    expect(res.status).toBe(200);
    const side = await hub.deviceSide(req.streamId);
    const got = collect(side);
    const closed = once(side, 'close');
    side.write('abc');
    side.write(Buffer.alloc(200_000, 'x'));
    side.end('def');
    expect(await got.ended).toBe(`abc${'x'.repeat(200_000)}def`);
    await closed;
    await noStreamsLeft();
  });

  it('a relay refusal closes the target and is logged with its status', async () => {
    const req = request('web');
    req.token = newSecret(); // not the token the relay expects
    tokens.push(req.token);
    await hub.send(DEVICE, req);
    expect((await hub.response(req.streamId)).status).toBe(200);
    const line = await logs.waitFor((l) => l.msg === 'relay dial failed');
    expect(line).toMatchObject({ status: 401, code: 'UNAUTHORIZED', level: 40 });
    await target.idle();
    await noStreamsLeft();
  });

  it('answers a request delivered twice only once (QoS 1 may redeliver)', async () => {
    const from = hub.published.length;
    const req = request('echo');
    await hub.send(DEVICE, req);
    await hub.send(DEVICE, req);
    expect((await ask('telnet')).res.status).toBe(403);
    const answers = hub.published.slice(from).filter((p) => p.topic.includes('/response') && p.payload.includes(req.streamId));
    expect(answers).toHaveLength(1);
    (await hub.deviceSide(req.streamId)).end();
    await noStreamsLeft();
  });

  it('never logs the device key or a stream token', () => {
    const text = logs.text();
    expect(text).not.toContain(key);
    for (const t of tokens) expect(text).not.toContain(t);
  });

  it('stop(): retained offline status, open streams closed with 1001, idempotent', async () => {
    const { req } = await ask('echo');
    const side = await hub.deviceSide(req.streamId);
    const closed = new Promise<unknown>((resolve) => side.once('error', resolve));
    const from = hub.published.length;
    await Promise.all([agent.stop(), agent.stop()]);
    const off = await hub.waitFor((p) => p.topic === topics.status(DEVICE) && p.retain && p.payload.includes('"online":false'), from);
    expect(JSON.parse(off.payload)).toMatchObject({ v: 1, online: false });
    const err = await closed;
    expect(err).toBeInstanceOf(StreamClosedError);
    expect((err as StreamClosedError).wsCode).toBe(1001);
    expect(agent.openStreams).toBe(0);
    await agent.stop();
  });
});

describe('RelayDialer.preconnect', () => {
  it('the dial takes the relay connection opened ahead: same name, port and trust anchors, no second connection', async () => {
    const dialer = new RelayDialer({ secureContext: hubTlsContext({ ca: tls.ca }) });
    const req = hub.request(DEVICE, 'echo');
    const before = hub.tlsConnections;
    const release = dialer.preconnect(req.relayUrl);
    await vi.waitFor(() => expect(hub.tlsConnections).toBe(before + 1), { timeout: 5000 });
    const ws = await dialer.dial(req.relayUrl, req.token);
    expect(hub.tlsConnections).toBe(before + 1);
    release(); // taken: releasing leaves it open
    await carriesToDeviceSide(ws, req.streamId, 'over the early connection');
  });

  it('the hub resetting the connection opened ahead as the dial takes it: the dial goes again, once, on its own', async () => {
    const dialer = new RelayDialer({ secureContext: hubTlsContext({ ca: tls.ca }) });
    const req = hub.request(DEVICE, 'echo');
    const before = hub.tlsConnections;
    const upgrades = hub.relayUpgrades;
    hub.resetRelayUpgrade = (n) => n === upgrades + 1;
    try {
      const release = dialer.preconnect(req.relayUrl);
      await vi.waitFor(() => expect(hub.tlsConnections).toBe(before + 1), { timeout: 5000 });
      const ws = await dialer.dial(req.relayUrl, req.token);
      release();
      expect(hub.relayUpgrades).toBe(upgrades + 2);
      expect(hub.tlsConnections).toBe(before + 2);
      await carriesToDeviceSide(ws, req.streamId, 'on the second try');
      // A reset on a connection of its own is not tried again.
      const other = hub.request(DEVICE, 'echo');
      hub.resetRelayUpgrade = (n) => n === upgrades + 3;
      await expect(dialer.dial(other.relayUrl, other.token)).rejects.toThrow(/relay connection failed: ECONNRESET/);
      expect(hub.relayUpgrades).toBe(upgrades + 3);
    } finally {
      hub.resetRelayUpgrade = () => false;
    }
  });

  it('through a proxy nothing is opened ahead', async () => {
    const dialer = new RelayDialer({ secureContext: hubTlsContext({ ca: tls.ca }), agent: new HttpAgent() });
    const before = hub.tlsConnections;
    const release = dialer.preconnect(hub.request(DEVICE, 'echo').relayUrl);
    release();
    expect(hub.tlsConnections).toBe(before);
  });
});

