import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transportFailed } from '../../agent/connect-failure.js';
import { ControlChannel } from '../../agent/control-channel.js';
import { setDeviceDisabled } from '../../hub/device-admin.js';
import { makeTestTls } from '../helpers/tls.js';
import { startTestHub, type TestHub } from '../hub/helpers.js';
import { captureLog, testChannel, type LogLine } from './helpers.js';

/**
 * Why a control channel attempt failed, in the agent's own log: a refused WebSocket upgrade (a hub
 * URL without /mqtt) and a refused login (CONNACK return codes), each one warn line with what to
 * check, said once while the cause stays the same. Against a real hub on 127.0.0.1.
 */
let t: TestHub;
const running: ControlChannel[] = [];
const WARN = 40;

beforeAll(async () => {
  t = await startTestHub();
});
afterAll(async () => {
  for (const ch of running) await ch.stop();
  await t?.stop();
});

function channel(opts: { url?: string; deviceId: string; key: string; ca?: string }) {
  return testChannel(running, { ...opts, url: opts.url ?? `wss://localhost:${t.port}/mqtt`, ca: opts.ca ?? t.ca, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
}

const isError = (l: LogLine): boolean => l.msg === 'control channel error';
const warnings = (lines: LogLine[]): LogLine[] => lines.filter((l) => isError(l) && l.level === WARN);
/** Resolves once the channel has logged `n` reconnect attempts. */
const attempts = (logs: ReturnType<typeof captureLog>, n: number): Promise<LogLine> =>
  logs.waitFor((l) => l.msg === 'control channel reconnecting' && Number(l.attempt) >= n);

describe('a refused WebSocket upgrade', () => {
  it('names the status, the hub error and the /mqtt path, once while it stays the same', async () => {
    const key = t.addDevice('dev-path');
    const url = `wss://localhost:${t.port}/`;
    const { ch, logs } = channel({ url, deviceId: 'dev-path', key });
    await ch.start();
    await attempts(logs, 4);
    const warned = warnings(logs.lines);
    expect(warned).toHaveLength(1);
    const line = warned[0]!;
    expect(line).toMatchObject({ status: 404, code: 'NOT_FOUND', reason: 'no WebSocket endpoint at /' });
    expect(String(line.hint)).toContain(`wss://localhost:${t.port}/mqtt`);
    // Later attempts met the same refusal: told at debug.
    expect(logs.lines.filter((l) => isError(l) && l.status === 404).length).toBeGreaterThanOrEqual(2);
    expect(ch.connected).toBe(false);
    await ch.stop();
  });

  it('reads a foreign body as no devstreams error, and bounds and cleans what it echoes', async () => {
    const tls = makeTestTls();
    const hostile = JSON.stringify({ error: { code: 'NOT_FOUND', status: 404, reason: `evil\n{"level":60}\u001b[31m${'x'.repeat(5000)}` } });
    const bodies = [hostile, '<html>not found</html>'];
    let served = 0;
    const server: Server = createServer({ cert: tls.cert, key: tls.key }, (_req, res) => res.writeHead(404).end());
    server.on('upgrade', (_req, socket) => {
      const body = bodies[Math.min(served++, bodies.length - 1)]!;
      socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { ch, logs } = channel({ url: `wss://localhost:${(server.address() as AddressInfo).port}/mqtt`, deviceId: 'dev-x', key: 'k'.repeat(32), ca: tls.ca });
      await ch.start();
      const first = await logs.waitFor((l) => isError(l) && l.status === 404);
      expect(first.code).toBe('NOT_FOUND');
      expect(String(first.reason)).toMatch(/^evil\?\{"level":60\}\?\[31mx+\.\.\.$/);
      expect(String(first.reason).length).toBeLessThanOrEqual(203);
      expect(String(first.hint)).toContain('nothing serves /mqtt');
      // The cause changed (no devstreams error in the body now): a new warn line, without code or reason.
      const second = await logs.waitFor((l) => isError(l) && l.status === 404 && l.level === WARN && l !== first);
      expect(second.code).toBeUndefined();
      expect(second.reason).toBeUndefined();
      await ch.stop();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('a refused login', () => {
  it('an unknown device: return code 4, pointing at hub.deviceId and hub.keyFile, never the key', async () => {
    const key = 'unknown-device-key-' + 'q'.repeat(30);
    const { ch, logs } = channel({ deviceId: 'dev-nobody', key });
    await ch.start();
    await attempts(logs, 3);
    const warned = warnings(logs.lines);
    expect(warned).toHaveLength(1); // not also mqtt.js's "Connection refused: ..." line
    expect(warned[0]!.code).toBe(4);
    expect(String(warned[0]!.err)).toContain('dev-nobody');
    expect(String(warned[0]!.hint)).toMatch(/hub\.deviceId.*hub\.keyFile/);
    expect(logs.text()).not.toContain(key);
    expect(logs.text()).not.toContain('dsas1.');
    await ch.stop();
  });

  it('a wrong key: the same return code and hint', async () => {
    t.addDevice('dev-wrongkey');
    const key = 'wrong-key-' + 'z'.repeat(40);
    const { ch, logs } = channel({ deviceId: 'dev-wrongkey', key });
    await ch.start();
    const line = await logs.waitFor((l) => isError(l) && l.level === WARN);
    expect(line.code).toBe(4);
    expect(String(line.hint)).toContain('hub.keyFile');
    expect(logs.text()).not.toContain(key);
    await ch.stop();
  });

  it('a disabled device: return code 5, naming enable-device', async () => {
    const key = t.addDevice('dev-off');
    setDeviceDisabled({ configFile: join(t.dir, 'hub.yaml'), deviceId: 'dev-off', disabled: true });
    const { ch, logs } = channel({ deviceId: 'dev-off', key });
    await ch.start();
    const line = await logs.waitFor((l) => isError(l) && l.level === WARN);
    expect(line.code).toBe(5);
    expect(String(line.hint)).toContain('devstreams hub enable-device dev-off');
    expect(logs.text()).not.toContain(key);
    await ch.stop();
  });
});

describe('a hub certificate the agent does not trust', () => {
  it('says which setting decides it (hub.ca), once', async () => {
    const key = t.addDevice('dev-ca');
    const other = makeTestTls();
    const { ch, logs } = channel({ deviceId: 'dev-ca', key, ca: other.ca });
    await ch.start();
    await attempts(logs, 3);
    const warned = warnings(logs.lines);
    expect(warned).toHaveLength(1);
    expect(String(warned[0]!.code)).toMatch(/CERT|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|SELF_SIGNED/);
    expect(String(warned[0]!.hint)).toContain('hub.ca');
    await ch.stop();
  });

  it("leaves out Node 24's advice about its own flags", () => {
    const node24 = Object.assign(new Error('unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca'), {
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    expect(transportFailed(node24).fields).toMatchObject({ err: 'unable to verify the first certificate', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(transportFailed(refused).fields).toEqual({ err: 'connect ECONNREFUSED 127.0.0.1:1', code: 'ECONNREFUSED' });
  });
});

describe('an mqtts:// hub URL pointed at the hub HTTPS port', () => {
  it('says the server answered in HTTP and names the wss:// URL to use, once', async () => {
    const key = t.addDevice('dev-mqtts');
    const { ch, logs } = channel({ url: `mqtts://localhost:${t.port}`, deviceId: 'dev-mqtts', key });
    await ch.start();
    await attempts(logs, 3);
    const warned = warnings(logs.lines);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({
      err: `the server at localhost:${t.port} answered in HTTP, not MQTT: hub.url is an mqtts:// URL pointed at an HTTPS port`,
    });
    expect(String(warned[0]!.hint)).toContain(`use wss://localhost:${t.port}/mqtt`);
    expect(String(warned[0]!.hint)).toContain('mqtts.listen');
    // Every attempt met it (not only the first stream MQTT.js built): the parser's error never shows.
    expect(logs.lines.filter((l) => isError(l) && String(l.err).includes('answered in HTTP')).length).toBeGreaterThanOrEqual(3);
    expect(logs.text()).not.toMatch(/Invalid header flag bits/);
    await ch.stop();
  });
});
