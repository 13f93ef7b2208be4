import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubTlsContext } from '../../agent/hub-tls.js';
import { clientCiphers } from '../../protocol/index.js';
// @ts-expect-error: a build script in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';
import { runBundledChild } from '../helpers/bundled-child.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';

let tls: TestTls;
let hub: FakeHub;
beforeAll(async () => {
  tls = makeTestTls();
  hub = new FakeHub(tls);
  await hub.start();
});
afterAll(async () => hub?.stop());

async function handshake(secureContext: ReturnType<ReturnType<typeof hubTlsContext>>): Promise<TLSSocket> {
  const s = connect({ host: 'localhost', port: Number(new URL(hub.url).port), ...(secureContext ? { secureContext } : {}) });
  s.on('error', () => {});
  await Promise.race([once(s, 'secureConnect'), once(s, 'error').then(([e]) => Promise.reject(e))]);
  return s;
}

describe("the agent's TLS context for its hub (agent/hub-tls.ts)", () => {
  it("is Node's default (none) without a CA or a cipher order", () => {
    expect(hubTlsContext({})()).toBeUndefined();
  });

  it('is built once and shared: the same context every time', () => {
    const get = hubTlsContext({ ca: tls.ca });
    expect(get()).toBeDefined();
    expect(get()).toBe(get());
  });

  it('trusts the configured CA (the cipher order is test/e2e/tls-cipher.test.ts)', async () => {
    const s = await handshake(hubTlsContext({ ca: tls.ca, ciphers: clientCiphers('chacha20-poly1305') })());
    expect(s.authorized).toBe(true);
    s.destroy();
    // Without the CA the hub's certificate is not trusted.
    await expect(handshake(hubTlsContext({ ciphers: clientCiphers('chacha20-poly1305') })())).rejects.toThrow(/self[- ]signed|unable to verify|UNABLE_TO_GET_ISSUER/i);
  });
});

describe("the agent's TLS context starts from Node's root store", () => {
  // Two CAs, each with a TLS server: the first is the agent's hub.ca; the second Node holds in its
  // root store, given at start with NODE_EXTRA_CA_CERTS. A context made from the bundled roots'
  // PEM text plus hub.ca (a `ca` option) trusts only the first; the agent's, Node's store plus
  // hub.ca, trusts both, as it trusts every bundled root.
  const servers: Server[] = [];
  let hubCa: TestTls;
  let otherCa: TestTls;
  let ports: number[];
  beforeAll(async () => {
    hubCa = makeTestTls();
    otherCa = makeTestTls();
    ports = [];
    for (const t of [hubCa, otherCa]) {
      const server = createServer({ cert: t.cert, key: t.key }, (s) => s.end());
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      ports.push((server.address() as { port: number }).port);
    }
  });
  afterAll(() => servers.forEach((s) => s.close()));

  const child = (env: Record<string, string>) =>
    runBundledChild(join(import.meta.dirname, 'fixtures/hub-tls-child.ts'), { node: shippedNode() as string, env: { CA_FILE: hubCa.caFile, PORTS: ports.join(','), ...env } });

  it("trusts hub.ca and what Node's store holds (NODE_EXTRA_CA_CERTS)", async () => {
    const r = await child({ NODE_EXTRA_CA_CERTS: otherCa.caFile });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([true, true]);
  });

  it("trusts no other CA: without it in Node's store, the second server is refused", async () => {
    const r = await child({});
    expect(JSON.parse(r.stdout)).toEqual([true, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
  });
});
