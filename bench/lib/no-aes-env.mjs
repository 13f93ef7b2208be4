// A CPU without AES instructions (a Raspberry Pi 3 or 4), stood in for on x86-64 by OpenSSL's own
// switch: OPENSSL_ia32cap masks AES-NI and PCLMULQDQ for the process given this environment. One
// value for the benchmark (bench/lib/no-aes.mjs) and the tests (test/helpers/cpu.ts).
export const NO_AES_NI_ENV = Object.freeze({ OPENSSL_ia32cap: '~0x200000200000000' });
