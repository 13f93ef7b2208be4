import { readFileSync } from 'node:fs';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { NO_AES_NI_ENV as BENCH_NO_AES_NI_ENV } from '../../bench/lib/no-aes-env.mjs';

/**
 * A CPU without AES instructions (a Raspberry Pi 3 or 4), stood in for on x86-64 by OpenSSL's own
 * switch: the environment that masks AES-NI and PCLMULQDQ, the benchmark's (bench/lib/no-aes-env.mjs).
 */
export const NO_AES_NI_ENV: Readonly<Record<string, string>> = BENCH_NO_AES_NI_ENV;

/** x86-64 with AES-NI: where NO_AES_NI_ENV makes a difference. */
export const X86_AES_NI = process.arch === 'x64' && /^flags\s*:.*\baes\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
