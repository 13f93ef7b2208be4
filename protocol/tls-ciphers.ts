import { createCipheriv } from 'node:crypto';
import { DEFAULT_CIPHERS } from 'node:tls';

/**
 * Which AEAD a client asks the hub for first. `auto` (the default) measures both on this CPU once:
 * a board whose CPU has no AES instructions (Raspberry Pi 3 and 4, whose Broadcom SoCs lack the
 * ARMv8 crypto extensions, and other early Cortex-A53 boards) runs ChaCha20-Poly1305 three to four
 * times as fast as AES-GCM, and TLS is most of what a device spends per byte it carries; a CPU with
 * AES instructions runs AES-GCM faster and keeps Node's order. The hub (hub/server.ts) prefers
 * AES-128-GCM but gives ChaCha20-Poly1305 to a client that lists it first (OpenSSL's
 * PrioritizeChaCha), so each side of a stream gets what is cheap for it.
 */
export const TLS_CIPHER_CHOICES = ['auto', 'aes-gcm', 'chacha20-poly1305'] as const;
export type TlsCipherChoice = (typeof TLS_CIPHER_CHOICES)[number];

/** What a client resolved `auto` (or its setting) to, and the measured cost per byte when it measured. */
export interface TlsCipherResolution {
  cipher: 'aes-gcm' | 'chacha20-poly1305';
  measured?: { aesGcmNsPerByte: number; chacha20NsPerByte: number };
}

/** ChaCha20-Poly1305 is asked for first when it is at least this many times as fast as AES-128-GCM. */
const CHACHA_MIN_SPEEDUP = 1.5;
const SAMPLE_BYTES = 4 * 1024;
const ROUNDS = 48;

let measured: TlsCipherResolution['measured'] | undefined;

/**
 * Resolves a setting to the cipher to ask for first; `auto` measures (once per process: 1 ms on
 * this project's x86 test machine, a few on a board without AES instructions), and keeps AES-GCM
 * when it cannot. `measure` replaces the measurement (tests).
 */
export function resolveTlsCipher(choice: TlsCipherChoice, measure: () => NonNullable<TlsCipherResolution['measured']> = measureAeadCost): TlsCipherResolution {
  if (choice !== 'auto') return { cipher: choice };
  let m: NonNullable<TlsCipherResolution['measured']>;
  try {
    m = measure === measureAeadCost ? (measured ??= measure()) : measure();
  } catch {
    return { cipher: 'aes-gcm' }; // an OpenSSL without one of the two (a FIPS build has no ChaCha20): Node's order
  }
  return { cipher: m.aesGcmNsPerByte > CHACHA_MIN_SPEEDUP * m.chacha20NsPerByte ? 'chacha20-poly1305' : 'aes-gcm', measured: m };
}

/**
 * The `ciphers` option for a TLS client that asks for `cipher` first: undefined for AES-GCM (Node's
 * own order), else Node's list with the ChaCha20-Poly1305 suites (TLS 1.3, then TLS 1.2's) in front.
 */
export function clientCiphers(cipher: TlsCipherResolution['cipher']): string | undefined {
  if (cipher === 'aes-gcm') return undefined;
  const chacha = ['TLS_CHACHA20_POLY1305_SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305'];
  return [...chacha, ...DEFAULT_CIPHERS.split(':').filter((c) => !chacha.includes(c))].join(':');
}

/**
 * The CPU time per byte of sealing a TLS record's worth of bytes with AES-128-GCM and with
 * ChaCha20-Poly1305, through the same OpenSSL that TLS uses (so OpenSSL's own CPU detection, and
 * OPENSSL_ia32cap / OPENSSL_armcap, decide it as they decide TLS's). Each cipher is set up once and
 * sealed once outside the timing; then the best of ROUNDS alternating timed seals of the same
 * cipher objects. Before the twenty-first round each of 5 timed seals included its createCipheriv,
 * and the set-up and the first calls' warm-up decided: on an EPYC host, where the two AEADs cost the
 * same with AES-NI, two of three CI runs measured AES-GCM over 1.5 times ChaCha20's cost and chose
 * ChaCha20, and five fresh processes without AES-NI measured ratios of 0.89-6.06 (AES-GCM kept in
 * three). Then, in the agent with the other core loaded, six runs each: 0.86-1.12 with AES-NI,
 * 1.9-5.5 without (test/e2e/tls-cipher.test.ts's agents).
 *
 * Each seal's output is a fresh allocation that lives until the next garbage collection, so a seal
 * of 32 KiB touched about 8 fresh pages of glibc's heap, and the page faults were most of what was
 * timed: on the twenty-second round's VM (a fault about 12-22 us) AES-GCM with AES-NI measured
 * 3.1-3.2 ns/B where it costs 0.25, and the faults, the same for both ciphers, squeezed the ratio
 * toward 1: 0.90-0.99 with AES-NI and only 1.57-1.68 without, a hair over the 1.5 line (ten fresh
 * processes each, the other core loaded), most likely why one CI run's agent with AES-NI chose
 * ChaCha20. Seals of 4 KiB, the best of 48, leave out the calls that fault: 0.63-0.75 with AES-NI
 * and 3.06-3.20 without (the same ten and ten), AES-GCM 0.34-0.36 ns/B with AES-NI. About 1 ms in
 * all.
 */
export function measureAeadCost(): NonNullable<TlsCipherResolution['measured']> {
  const data = Buffer.alloc(SAMPLE_BYTES, 0x5a);
  const key = Buffer.alloc(32, 7);
  const iv = Buffer.alloc(12, 1);
  const open = (alg: 'aes-128-gcm' | 'chacha20-poly1305') =>
    createCipheriv(alg as 'aes-128-gcm', alg === 'aes-128-gcm' ? key.subarray(0, 16) : key, iv, { authTagLength: 16 });
  const aesGcm = open('aes-128-gcm');
  const chacha20 = open('chacha20-poly1305');
  aesGcm.update(data);
  chacha20.update(data);
  const seal = (c: ReturnType<typeof open>): number => {
    const started = process.hrtime.bigint();
    c.update(data);
    return Number(process.hrtime.bigint() - started);
  };
  let aes = Infinity;
  let chacha = Infinity;
  for (let i = 0; i < ROUNDS; i++) {
    aes = Math.min(aes, seal(aesGcm));
    chacha = Math.min(chacha, seal(chacha20));
  }
  aesGcm.final();
  chacha20.final();
  return { aesGcmNsPerByte: aes / SAMPLE_BYTES, chacha20NsPerByte: chacha / SAMPLE_BYTES };
}
