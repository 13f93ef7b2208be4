import net from 'node:net';
import { Agent } from 'node:https';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, apiPaths, topics } from '../../protocol/index.js';
import { HubLimitsSchema } from '../../hub/config.js';
import { connectDevice, startTestHub, until, type TestHub } from '../hub/helpers.js';
import { closedWithin, httpsGet, readUntilClose, tlsConnect } from './fuzz-helpers.js';

/**
 * Slowloris and connection floods: a connection that has not authenticated within
 * limits.authTimeoutMs is closed, whatever stage it stalls in; at most
 * limits.unauthenticatedPerAddress such connections per source address. Authenticated
 * connections and other addresses are unaffected.
 */

const AUTH_MS = 1000;
/** The deadline plus generous scheduling slack on a loaded 2-core machine. */
const BOUND_MS = AUTH_MS + 2500;

let t: TestHub;
let device: MqttClient;
let http: Agent;

beforeAll(async () => {
  t = await startTestHub({
    limits: { ...HubLimitsSchema.parse({}), authTimeoutMs: AUTH_MS, unauthenticatedPerAddress: 3 },
    mqtts: { listen: '127.0.0.1:0' },
  });
  device = await connectDevice(t, 'steady', t.addDevice('steady'));
  http = new Agent({ keepAlive: true, ca: t.ca, maxSockets: 1 });
});
afterAll(async () => {
  http?.destroy();
  await device?.endAsync(true);
  await t?.stop();
});

/** Writes `data` one byte every 100 ms until the socket closes. */
function drip(socket: net.Socket, data: string | Buffer): void {
  const bytes = Buffer.from(data);
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= bytes.length) return clearInterval(timer);
    socket.write(bytes.subarray(i, ++i));
  }, 100);
  socket.once('close', () => clearInterval(timer));
}

/** Asserts the socket closes after (about) the deadline, not before it, and within the bound. */
async function expectClosedByDeadline(socket: net.Socket, what: string): Promise<void> {
  const start = Date.now();
  await closedWithin(socket, BOUND_MS, what);
  expect(Date.now() - start).toBeGreaterThanOrEqual(AUTH_MS - 300);
}

async function normalClientWorks(): Promise<void> {
  const r = await httpsGet(t.port, apiPaths.devices, t.token, http);
  expect(r.status).toBe(200);
  await device.publishAsync(topics.status('steady'), JSON.stringify({ v: PROTOCOL_VERSION, online: true, openStreams: 0 }), { qos: 1, retain: true });
}

describe('slowloris: unauthenticated connections are closed after limits.authTimeoutMs', () => {
  it('a TCP connection that never starts TLS', async () => {
    const s = net.connect(t.port, '127.0.0.1');
    s.on('error', () => {});
    await Promise.all([expectClosedByDeadline(s, 'silent TCP connection'), normalClientWorks()]);
  });

  it('a TLS connection that sends its HTTP headers one byte at a time (API and relay paths)', async () => {
    const api = await tlsConnect(t.port, t.ca);
    drip(api as unknown as net.Socket, `GET ${apiPaths.devices} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${t.token}\r\n\r\n`);
    const relay = await tlsConnect(t.port, t.ca);
    drip(relay as unknown as net.Socket, `GET ${apiPaths.relay('A'.repeat(22))} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`);
    await Promise.all([
      expectClosedByDeadline(api as unknown as net.Socket, 'dripping API request'),
      expectClosedByDeadline(relay as unknown as net.Socket, 'dripping relay upgrade'),
      normalClientWorks(),
    ]);
  });

  it('a request whose headers are not in by the deadline gets 408 with the JSON error, then the connection closes', async () => {
    const s = await tlsConnect(t.port, t.ca);
    s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n'); // and never the blank line
    const { data, timedOut } = await readUntilClose(s, BOUND_MS);
    expect(timedOut).toBe(false);
    const text = data.toString();
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toEqual({
      error: { code: 'BAD_REQUEST', status: 408, reason: 'request not received in time (limits.authTimeoutMs)' },
    });
  });

  it('an MQTT-over-WebSocket connection that never sends CONNECT', async () => {
    const ws = new WebSocket(`wss://localhost:${t.port}${apiPaths.mqtt}`, 'mqtt', { ca: t.ca });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const start = Date.now();
    const code = await new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
    expect(code).toBe(1006); // the TCP connection was cut
    expect(Date.now() - start).toBeLessThan(BOUND_MS);
    await normalClientWorks();
  });

  it('an mqtts connection that sends CONNECT one byte at a time', async () => {
    const s = await tlsConnect(t.hub.server.mqttsPort, t.ca);
    const connect = mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'steady', username: 'steady', password: Buffer.from('x'.repeat(43)),
    });
    drip(s as unknown as net.Socket, connect);
    await Promise.all([expectClosedByDeadline(s as unknown as net.Socket, 'dripping CONNECT'), normalClientWorks()]);
  });

  it('authenticated connections outlive the deadline', async () => {
    const slow = net.connect(t.port, '127.0.0.1');
    slow.on('error', () => {});
    await normalClientWorks(); // authenticates the keep-alive API connection now
    const [apiSocket] = [...Object.values(http.sockets), ...Object.values(http.freeSockets)].flat();
    expect(apiSocket).toBeDefined();
    await closedWithin(slow, BOUND_MS, 'slow connection'); // the deadline has passed
    expect(apiSocket!.destroyed).toBe(false);
    expect(device.connected).toBe(true);
    await normalClientWorks();
  });
});

describe('limits.unauthenticatedPerAddress', () => {
  it('past three unauthenticated connections from one address, the next is closed at once; other addresses are served', async () => {
    const held = await Promise.all([0, 1, 2].map(() => tlsConnect(t.port, t.ca, { localAddress: '127.0.0.2' })));
    const start = Date.now();
    const fourth = net.connect({ port: t.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    fourth.on('error', () => {});
    await closedWithin(fourth, BOUND_MS, 'fourth connection');
    expect(Date.now() - start).toBeLessThan(AUTH_MS - 300); // refused at accept, not by the deadline
    await normalClientWorks(); // 127.0.0.1 is another address
    expect(t.logs.lines().some((l) => String(l.msg).includes('limits.unauthenticatedPerAddress') && l.address === '127.0.0.2')).toBe(true);

    // Once they are gone, the address is admitted again.
    for (const s of held) s.destroy();
    await Promise.all(held.map((s) => closedWithin(s, 1000)));
    await until(() => t.hub.server.guard.unauthenticatedCount('127.0.0.2') === 0, 3000, 'slots released');
    const again = await tlsConnect(t.port, t.ca, { localAddress: '127.0.0.2' });
    again.destroy();
  });
});
