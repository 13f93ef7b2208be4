import { join } from 'node:path';
import { DEFAULT_CIPHERS, createSecureContext } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { clientCiphers, measureAeadCost, resolveTlsCipher } from '../../protocol/index.js';
// @ts-expect-error: a build script in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';
import { runBundledChild } from '../helpers/bundled-child.js';
import { NO_AES_NI_ENV, X86_AES_NI } from '../helpers/cpu.js';

describe('TLS cipher preference (protocol/tls-ciphers.ts)', () => {
  it('takes an explicit setting as it is, without measuring', () => {
    const measure = (): never => {
      throw new Error('measured');
    };
    expect(resolveTlsCipher('aes-gcm', measure)).toEqual({ cipher: 'aes-gcm' });
    expect(resolveTlsCipher('chacha20-poly1305', measure)).toEqual({ cipher: 'chacha20-poly1305' });
  });

  it('auto: ChaCha20-Poly1305 only where it is at least 1.5 times as fast as AES-GCM', () => {
    const at = (aes: number, chacha: number) => resolveTlsCipher('auto', () => ({ aesGcmNsPerByte: aes, chacha20NsPerByte: chacha })).cipher;
    expect(at(4.14, 1.11)).toBe('chacha20-poly1305'); // no AES instructions
    expect(at(0.43, 0.64)).toBe('aes-gcm'); // AES-NI
    expect(at(1.4, 1.0)).toBe('aes-gcm'); // faster, but not clearly
    expect(at(1.6, 1.0)).toBe('chacha20-poly1305');
    expect(resolveTlsCipher('auto', () => ({ aesGcmNsPerByte: 4, chacha20NsPerByte: 1 })).measured).toEqual({ aesGcmNsPerByte: 4, chacha20NsPerByte: 1 });
    // An OpenSSL without one of the ciphers (createCipheriv throws): AES-GCM, Node's own order, and no crash.
    const unsupported = (): never => {
      throw Object.assign(new Error('Unknown cipher'), { code: 'ERR_CRYPTO_UNKNOWN_CIPHER' });
    };
    expect(resolveTlsCipher('auto', unsupported)).toEqual({ cipher: 'aes-gcm' });
  });

  it("puts the ChaCha20-Poly1305 suites first and keeps the rest of Node's list once each", () => {
    expect(clientCiphers('aes-gcm')).toBeUndefined();
    const list = clientCiphers('chacha20-poly1305')!.split(':');
    expect(list.slice(0, 3)).toEqual(['TLS_CHACHA20_POLY1305_SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305']);
    expect(new Set(list).size).toBe(list.length);
    for (const c of DEFAULT_CIPHERS.split(':')) expect(list).toContain(c);
    expect(() => createSecureContext({ ciphers: list.join(':') })).not.toThrow();
  });

  // The ratio decides which cipher a device asks for: far from the 1.5 line on both sides, in fresh
  // processes as agents start, or a device can be handed the slow one.
  it.skipIf(!X86_AES_NI)("in the executables' Node: AES-GCM clearly cheaper with AES-NI, clearly dearer without", async () => {
    const ratio = async (env: Readonly<Record<string, string>>): Promise<number> => {
      const r = await runBundledChild(join(import.meta.dirname, 'fixtures/aead-cost-child.ts'), { node: shippedNode() as string, env });
      expect(r.stderr).toBe('');
      const m = JSON.parse(r.stdout) as { aesGcmNsPerByte: number; chacha20NsPerByte: number };
      return m.aesGcmNsPerByte / m.chacha20NsPerByte;
    };
    for (let i = 0; i < 3; i++) {
      expect(await ratio({})).toBeLessThan(1.2);
      expect(await ratio(NO_AES_NI_ENV)).toBeGreaterThan(2);
    }
  });

  it('measures both AEADs through OpenSSL', () => {
    const m = measureAeadCost();
    for (const v of [m.aesGcmNsPerByte, m.chacha20NsPerByte]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
  });
});
