import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/proc.js';
import { echoTarget } from '../helpers/targets.js';
import { DaemonStack, echoRoundTrip } from './harness.js';
import { TcpProxy } from './tcp-proxy.js';

const PING_MS = 1000;
/** Timer and scheduling slack on a busy 2-core machine, on top of the two intervals. */
const SLACK_MS = 750;

// Real hub and agent processes per test: generous bounds for a loaded CI machine.
describe('dead relay detection (ping/pong) and hub restarts', { timeout: 120000 }, () => {
  const stacks: DaemonStack[] = [];
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const s of stacks.splice(0)) await s.stop();
    for (const c of closers.splice(0)) await c();
  });

  it(`a relay that goes silent (no FIN, no RST) is found by ping within two intervals: stream freed, local socket closed`, async () => {
    // The local service: holds its connection and notes when the agent closes it.
    let localClosedAt = 0;
    const server = net.createServer((sock) => sock.once('close', () => (localClosedAt = Date.now())).on('error', () => {}));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => new Promise((r) => server.close(() => r())));
    const localPort = (server.address() as net.AddressInfo).port;
    // Every hub connection (control channel, API, relay) goes through a proxy that can be frozen.
    const stack = new DaemonStack();
    stacks.push(stack);
    const proxyPort = await freePort();
    await stack.setup({
      allow: [`svc=${localPort}`],
      publicPort: proxyPort,
      agent: (c) => (c.hub.pingIntervalMs = PING_MS),
      hub: (c) => (c.relay = { pingIntervalMs: 0 }), // the hub stays quiet: only the agent's ping can tell
    });
    await stack.startHub();
    const proxy = await new TcpProxy(stack.port).start(proxyPort);
    closers.push(() => proxy.stop());
    await stack.startAgent();
    const client = stack.client(stack.port, 0);
    const stream = await client.openStream(stack.deviceId, 'svc');
    await stack.waitForDevice(true, 1);
    await stack.agent.waitForLog('stream open');
    const closed = new Promise<number>((resolve) => {
      const poll = setInterval(() => {
        if (stack.agent.logs('bridge ended with error').length + stack.agent.logs('bridge closed').length > 0) {
          clearInterval(poll);
          resolve(Date.now());
        }
      }, 20);
    });
    const frozenAt = Date.now();
    proxy.freeze();
    const endedAt = await closed;
    const line = stack.agent.logs('bridge ended with error')[0];
    expect(line, 'the agent ended the stream with an error').toBeTruthy();
    expect(endedAt - frozenAt).toBeLessThanOrEqual(2 * PING_MS + SLACK_MS);
    const deadline = Date.now() + SLACK_MS;
    while (localClosedAt === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(localClosedAt, 'the local socket was closed').toBeGreaterThan(0);
    expect(localClosedAt - frozenAt).toBeLessThanOrEqual(2 * PING_MS + SLACK_MS);
    stream.destroy();
    client.close();
  });

  it('SIGKILL of the hub: the agent frees the stream and closes the local socket at once, and reconnects when the hub returns', async () => {
    const target = await echoTarget();
    closers.push(() => target.close());
    const stack = new DaemonStack();
    stacks.push(stack);
    await stack.setup({ allow: [`svc=${target.port}`], agent: (c) => (c.hub.pingIntervalMs = PING_MS) });
    await stack.startHub();
    await stack.startAgent();
    const client = stack.client(stack.port, 0);
    const stream = await client.openStream(stack.deviceId, 'svc');
    stream.on('error', () => {});
    await echoRoundTrip(stream);
    const killedAt = Date.now();
    const hub = stack.hub;
    hub.child.kill('SIGKILL');
    await hub.exited;
    await stack.agent.waitForLine((l) => l.includes('"bridge ended with error"'), 2 * PING_MS + SLACK_MS);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(2 * PING_MS + SLACK_MS);
    await stack.agent.waitForLog('control channel disconnected');
    if (!stream.destroyed) await once(stream, 'close');
    client.close();

    // The hub comes back on the same port and config: the agent reconnects by itself, streams work.
    const connectedBefore = stack.agent.logs('agent connected').length;
    await stack.startHub();
    await stack.agent.waitForLine(() => stack.agent.logs('agent connected').length > connectedBefore, 15_000);
    await stack.waitForDevice(true);
    const client2 = stack.client();
    const again = await client2.openStream(stack.deviceId, 'svc');
    await echoRoundTrip(again);
    again.end();
    await once(again, 'close');
    client2.close();
  });
});
