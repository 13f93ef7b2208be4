import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { DevstreamsClient } from '../../service/index.js';
import { makeTestTls, tcpUnder } from '../helpers/tls.js';

/**
 * The keep-alive race: the hub closes an idle kept-alive connection just as the SDK sends the next
 * request on it (seen as `cannot reach hub ...: ECONNRESET` when 50 streams opened after a long
 * transfer). A real HTTPS server resets the connection when a second request arrives on it.
 */
describe('SDK over a kept-alive connection the hub resets', () => {
  const tls = makeTestTls();
  let server: https.Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    server?.close();
  });

  it('sends the request again, once, on a new connection', async () => {
    let connections = 0;
    const perConnection = new Map<Socket, number>();
    server = https.createServer({ key: tls.key, cert: tls.cert, keepAliveTimeout: 60_000 }, (req, res) => {
      const raw = tcpUnder(req.socket);
      const n = (perConnection.get(raw) ?? 0) + 1;
      perConnection.set(raw, n);
      if (n === 2) {
        raw.resetAndDestroy();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ devices: [] }));
    });
    server.on('connection', () => connections++);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const client = new DevstreamsClient({ hub: `https://127.0.0.1:${port}`, token: 't', ca: tls.ca, requestTimeoutMs: 5_000 });
    try {
      await client.listDevices();
      await expect(client.listDevices()).resolves.toEqual([]);
      expect(connections).toBe(2);
    } finally {
      client.close();
    }
  });
});
