import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveTlsCipher } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { Stack } from '../helpers/stack.js';
import { echoTarget, type Target } from '../helpers/targets.js';
import { NO_AES_NI_ENV } from '../helpers/cpu.js';
import { roundTrip, sha256 } from '../helpers/streams.js';

/**
 * The cipher each side of a stream asks the hub for (protocol/tls-ciphers.ts, hub/server.ts): a
 * device whose CPU has no AES instructions gets ChaCha20-Poly1305 on its relay connection, every
 * other client AES-128-GCM. A CPU without AES-NI is emulated with OpenSSL's own switch,
 * OPENSSL_ia32cap, which masks AES-NI and PCLMULQDQ (x86-64 only) for the agent's process alone.
 */

const MUX_OPEN = 'multiplexed connection open';
const AES = 'TLS_AES_128_GCM_SHA256';
const CHACHA = 'TLS_CHACHA20_POLY1305_SHA256';
/** This machine's own choice (the agents and the SDK here run on the same CPU and Node). */
const HAS_FAST_AES = resolveTlsCipher('auto').cipher === 'aes-gcm';

let echo: Target;
const stack = new Stack();

beforeAll(async () => {
  echo = await echoTarget();
  const devices = ['pi-aes', 'pi-no-aes', 'pi-chacha'];
  await stack.start(devices.map((id) => ({ id, allow: [`tcpecho=${echo.port}`], start: false })));
  const file = stack.agentConfig('pi-chacha');
  const cfg = parse(readFileSync(file, 'utf8')) as { hub: Record<string, unknown> };
  cfg.hub.tlsCipher = 'chacha20-poly1305';
  writeFileSync(file, stringify(cfg), { mode: 0o600 });
  await stack.startAgent('pi-aes');
  if (process.arch === 'x64') await stack.startAgent('pi-no-aes', NO_AES_NI_ENV);
  await stack.startAgent('pi-chacha');
});
afterAll(async () => {
  await stack.stop();
  await echo?.close();
});

/** Carries one checked stream to `device` (its agent opens its multiplexed connection) and returns the cipher the hub logged for that connection. */
async function relayCipher(device: string): Promise<unknown> {
  const c = stack.client();
  try {
    const payload = randomBytes(64 * 1024);
    const back = await roundTrip(await c.openStream(device, 'tcpecho'), payload);
    expect(sha256(back)).toBe(sha256(payload));
  } finally {
    c.close();
  }
  const opened = stack.hub.logs(MUX_OPEN).filter((l) => l.device === device);
  expect(opened).toHaveLength(1);
  return opened[0]!.cipher;
}

describe('the cipher of each hub connection', () => {
  it.skipIf(!HAS_FAST_AES)('a device with AES instructions: AES-128-GCM, the hub order; its start-up log says what auto measured', async () => {
    expect(await relayCipher('pi-aes')).toBe(AES);
    const started = stack.agents.get('pi-aes')!.logs('agent started')[0]!;
    expect(started.tlsCipher).toMatch(/^aes-gcm \(auto: aes-gcm [\d.]+ ns\/B, chacha20-poly1305 [\d.]+ ns\/B\)$/);
  });

  it.skipIf(process.arch !== 'x64')('a device without AES instructions: ChaCha20-Poly1305, which auto chose', async () => {
    expect(await relayCipher('pi-no-aes')).toBe(CHACHA);
    const started = stack.agents.get('pi-no-aes')!.logs('agent started')[0]!;
    expect(started.tlsCipher).toMatch(/^chacha20-poly1305 \(auto: /);
  });

  it('hub.tlsCipher: chacha20-poly1305 asks for it whatever the CPU', async () => {
    expect(await relayCipher('pi-chacha')).toBe(CHACHA);
    expect(stack.agents.get('pi-chacha')!.logs('agent started')[0]!.tlsCipher).toBe('chacha20-poly1305');
  });

  it("the SDK's connection: auto as this CPU decides, ChaCha20-Poly1305 when asked", async () => {
    for (const [tlsCipher, want] of [['auto', HAS_FAST_AES ? AES : CHACHA], ['chacha20-poly1305', CHACHA]] as const) {
      const before = stack.hub.logs(MUX_OPEN).filter((l) => typeof l.caller === 'string').length;
      const c = new DevstreamsClient({ hub: stack.hubUrl, token: stack.token, ca: readFileSync(stack.caFile), tlsCipher });
      try {
        const payload = randomBytes(1024);
        expect(sha256(await roundTrip(await c.openStream('pi-aes', 'tcpecho'), payload))).toBe(sha256(payload));
      } finally {
        c.close();
      }
      const callers = stack.hub.logs(MUX_OPEN).filter((l) => typeof l.caller === 'string');
      expect(callers).toHaveLength(before + 1);
      expect(callers.at(-1)!.cipher).toBe(want);
    }
  });
});
