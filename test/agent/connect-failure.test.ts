import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlChannel } from '../../agent/control-channel.js';
import { hubTlsContext } from '../../agent/hub-tls.js';
import { makeTestTls } from '../helpers/tls.js';
import { startTestHub, type TestHub } from '../hub/helpers.js';
import { captureLog, type LogLine } from './helpers.js';

/**
 * Why a control channel attempt failed, in the agent's own log: a refused WebSocket upgrade (a hub
 * URL without /mqtt), one warn line with what to check, said once while the cause stays the same.
 * Against a real hub on 127.0.0.1.
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
  const logs = captureLog();
  const ch = new ControlChannel({
    url: opts.url ?? `wss://localhost:${t.port}/mqtt`,
    deviceId: opts.deviceId,
    key: opts.key,
    secureContext: hubTlsContext({ ca: opts.ca ?? t.ca }),
    log: logs.log,
    onRequest: () => {},
    openStreams: () => 0,
    reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
  });
  running.push(ch);
  return { ch, logs };
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
