import { connect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubTlsContext } from '../../agent/hub-tls.js';
import { clientCiphers } from '../../protocol/index.js';
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
