import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, CliProcess, freePort } from '../helpers/proc.js';
import { roundTrip, sha256 } from '../helpers/streams.js';
import { DaemonStack } from './harness.js';
import { Netns, Tinyproxy, netnsProxySkipReason } from './netns-proxy.js';

/**
 * The agent runs in a network namespace whose only way out is a veth pair to the host, where
 * Debian's tinyproxy listens; the hub listens on the host's 127.0.0.1, which inside the namespace is
 * the namespace's own, empty loopback. The agent's hub URL stays wss://localhost:PORT: only a CONNECT
 * through the proxy (which resolves localhost on the host) reaches it.
 */
const skip = netnsProxySkipReason();
const PROXY_USER = 'devagent';
const PROXY_PASSWORD = `pw-${randomBytes(8).toString('hex')}`;

describe.skipIf(skip !== null)(
  `the agent reaches the hub only through a real HTTP proxy (tinyproxy) from a network namespace${skip ? ` [skipped: ${skip}]` : ''}`,
  { timeout: 120_000 },
  () => {
    const stack = new DaemonStack();
    const ns = new Netns();
    let proxy: Tinyproxy;
    let proxyUrl: string;

    /** Every agent a test started: one whose test failed before its own stop() is killed after it. */
    const started: CliProcess[] = [];
    /** Starts the stack's agent inside the namespace (environment on top of the test's, minus any proxy settings). */
    const startAgentInNs = (env: NodeJS.ProcessEnv): CliProcess => {
      stack.agent = new CliProcess(['agent', '--config', stack.agentYaml], { HTTPS_PROXY: '', https_proxy: '', NO_PROXY: '', no_proxy: '', ...env }, ns.exec(process.execPath, CLI));
      started.push(stack.agent);
      return stack.agent;
    };
    afterEach(async () => {
      for (const a of started.splice(0)) await a.stop('SIGKILL');
    });
    const secrets = (): string[] => [PROXY_PASSWORD, readFileSync(join(stack.dir, 'devices', `${stack.deviceId}.key`), 'utf8').trim()];

    /** Online through the proxy; a 4 MiB stream echoes intact; tinyproxy logged the namespace's CONNECTs to the hub port only. */
    async function provesProxiedPath(agent: CliProcess, mark: number): Promise<void> {
      const via = await agent.waitForLog('hub connections go through an HTTP proxy', {}, 30_000);
      expect(via.proxy).toBe(`http://${ns.hostAddr}:${proxy.opts.port}`); // credentials left out
      await agent.waitForLog('agent connected', {}, 60_000);
      await stack.waitForDevice(true);

      const client = stack.client();
      try {
        const payload = randomBytes(4 * 1024 * 1024);
        const s = await client.openStream(stack.deviceId, 'echo');
        const back = await roundTrip(s, payload);
        expect(back.length).toBe(payload.length);
        expect(sha256(back)).toBe(sha256(payload));
      } finally {
        client.close();
      }
      // At least the control channel's CONNECT and the stream's relay WebSocket's, all to the hub,
      // all from the namespace's address.
      const connects = proxy.connectsSince(mark);
      expect(connects.length).toBeGreaterThanOrEqual(2);
      for (const c of connects) expect(c).toBe(`localhost:${stack.port}`);
      expect(new Set(proxy.clientsSince(mark))).toEqual(new Set([ns.nsAddr]));
      const out = agent.lines.join('\n');
      for (const secret of secrets()) expect(out).not.toContain(secret);
    }

    beforeAll(async () => {
      // The agent's built-in echo: a TCP service on the host's loopback is out of the namespace's reach.
      await stack.setup({ allow: ['echo'] });
      await stack.startHub();
      await ns.start();
      proxy = await new Tinyproxy({
        listen: ns.hostAddr,
        port: await freePort(),
        allow: [ns.nsAddr],
        connectPorts: [stack.port],
        basicAuth: { user: PROXY_USER, password: PROXY_PASSWORD },
      }).start();
      proxyUrl = `http://${PROXY_USER}:${PROXY_PASSWORD}@${ns.hostAddr}:${proxy.opts.port}`;
    }, 90_000);
    afterAll(async () => {
      await stack.stop();
      await proxy?.stop();
      await ns.stop();
    });

    it('inside the namespace, the hub cannot be reached directly (neither on 127.0.0.1 nor on the host side of the veth); the proxy can', async () => {
      const direct = net.connect(stack.port, '127.0.0.1');
      await once(direct, 'connect'); // the hub is there, seen from the host
      direct.destroy();
      expect(await ns.tcpConnect('127.0.0.1', stack.port)).toBe('ECONNREFUSED');
      expect(await ns.tcpConnect(ns.hostAddr, stack.port)).toBe('ECONNREFUSED');
      expect(await ns.tcpConnect('192.0.2.1', stack.port)).toBe('ENETUNREACH'); // no route out at all
      expect(await ns.tcpConnect(ns.hostAddr, proxy.opts.port)).toBe('connected');
    });

    it('HTTPS_PROXY (NO_PROXY naming other hosts): online through the proxy, a 4 MiB stream intact, CONNECTs in the proxy log', async () => {
      const mark = proxy.lineCount;
      const agent = startAgentInNs({ HTTPS_PROXY: proxyUrl, NO_PROXY: 'example.com,.internal' });
      await provesProxiedPath(agent, mark);
      await agent.stop();
      await stack.waitForDevice(false);
    });

    it('hub.proxy in the config (it wins over NO_PROXY naming the hub): online through the proxy, a 4 MiB stream intact, CONNECTs in the proxy log', async () => {
      stack.editAgentYaml((c) => (c.hub.proxy = proxyUrl));
      const mark = proxy.lineCount;
      const agent = startAgentInNs({ NO_PROXY: 'localhost' });
      await provesProxiedPath(agent, mark);
      await agent.stop();
      await stack.waitForDevice(false);
    });

    it('HTTPS_PROXY with NO_PROXY naming the hub: the agent dials directly, which the namespace cannot; nothing reaches the proxy', async () => {
      stack.editAgentYaml((c) => delete c.hub.proxy);
      const mark = proxy.lineCount;
      const agent = startAgentInNs({ HTTPS_PROXY: proxyUrl, NO_PROXY: 'example.com,localhost' });
      const err = await agent.waitForLog('control channel error', {}, 30_000);
      expect(err.code).toBe('ECONNREFUSED'); // the namespace's own loopback: nothing listens there
      expect(err.err).toContain(`:${stack.port}`);
      await agent.waitForLine(() => agent.logs('control channel reconnecting').length >= 2, 30_000);
      expect(agent.logs('hub connections go through an HTTP proxy')).toEqual([]);
      expect(agent.logs('agent connected')).toEqual([]);
      expect(proxy.connectsSince(mark)).toEqual([]);
      await agent.stop();
    });

    it('a wrong proxy port: the agent keeps retrying, never comes online, and says what failed without the proxy password or its key', async () => {
      const wrongPort = await freePort();
      stack.editAgentYaml((c) => (c.hub.proxy = `http://${PROXY_USER}:${PROXY_PASSWORD}@${ns.hostAddr}:${wrongPort}`));
      const mark = proxy.lineCount;
      const agent = startAgentInNs({});
      const err = await agent.waitForLog('control channel error', {}, 30_000);
      // Bounded: three more attempts after the first failure (backoff 100 ms .. 1 s here).
      for (let n = 1; n <= 3; n++) await agent.waitForLine(() => agent.logs('control channel reconnecting').length >= n, 30_000);
      expect(agent.logs('agent connected')).toEqual([]);
      await stack.waitForDevice(false);
      expect(proxy.connectsSince(mark)).toEqual([]);
      // The failure names the proxy's address, not the hub's: it is the proxy that cannot be reached.
      expect(err.code).toBe('ECONNREFUSED');
      expect(err.err).toContain(`${ns.hostAddr}:${wrongPort}`);
      expect(err).toMatchObject({ proxy: `http://${ns.hostAddr}:${wrongPort}` });
      expect(err.err).toMatch(/^cannot reach the proxy /);
      const out = agent.lines.join('\n');
      for (const secret of secrets()) expect(out).not.toContain(secret);
      await agent.stop();
    });

    it('wrong proxy credentials: tinyproxy refuses the CONNECT (401), the agent says so once (not per retry), keeps retrying, never comes online', async () => {
      const wrongPassword = `wrong-${randomBytes(6).toString('hex')}`;
      stack.editAgentYaml((c) => (c.hub.proxy = `http://${PROXY_USER}:${wrongPassword}@${ns.hostAddr}:${proxy.opts.port}`));
      const mark = proxy.lineCount;
      const agent = startAgentInNs({});
      const refused = await agent.waitForLog('control channel error', {}, 30_000);
      expect(refused).toMatchObject({ component: 'control', proxy: `http://${ns.hostAddr}:${proxy.opts.port}` });
      expect([401, 407]).toContain(refused.status); // tinyproxy 1.11 answers a CONNECT with bad credentials 401
      expect(refused.err).toMatch(/^the proxy refused the CONNECT to the hub .*; the hub was not reached$/);
      for (let n = 1; n <= 3; n++) await agent.waitForLine(() => agent.logs('control channel reconnecting').length >= n, 30_000);
      // Three attempts, each refused by the proxy (it logged them), one warning.
      expect(proxy.connectsSince(mark).length).toBeGreaterThanOrEqual(3);
      expect(agent.logs('control channel error').filter((l) => l.level === 40)).toHaveLength(1);
      expect(agent.lines.join('\n')).not.toContain('hub answered');
      expect(agent.logs('agent connected')).toEqual([]);
      await stack.waitForDevice(false);
      const out = agent.lines.join('\n');
      for (const secret of [...secrets(), wrongPassword]) expect(out).not.toContain(secret);
      await agent.stop();
    });
  },
);
