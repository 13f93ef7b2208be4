import { readFileSync } from 'node:fs';

/**
 * A CPU without AES instructions (a Raspberry Pi 3 or 4), stood in for on x86-64 by OpenSSL's own
 * switch: OPENSSL_ia32cap masks AES-NI and PCLMULQDQ for the process given this environment
 * (bench/lib/no-aes.mjs has the same for the benchmark).
 */
export const NO_AES_NI_ENV: Readonly<Record<string, string>> = Object.freeze({ OPENSSL_ia32cap: '~0x200000200000000' });

/** x86-64 with AES-NI: where NO_AES_NI_ENV makes a difference. */
export const X86_AES_NI = process.arch === 'x64' && /^flags\s*:.*\baes\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
