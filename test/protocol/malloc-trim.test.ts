import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadMallocTrimFrom, MALLOC_TRIM_ADDON, nameProcess, PROCESS_NAME } from '../../protocol/index.js';
import { ROOT } from '../helpers/proc.js';

// The development build's helper (npm test builds it first: scripts/build.mjs, scripts/native.mjs).
const ADDON = join(ROOT, 'dist/native', MALLOC_TRIM_ADDON);
const tmp = mkdtempSync(join(tmpdir(), 'devstreams-trim-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * A process that makes glibc's heap look like an agent's after a busy stream: 96 MiB of 16-22 KiB
 * buffers, with a small buffer that lives on after every 50th, all the others dropped and collected.
 * It prints its RSS before and after trim() (or after nothing, as the control).
 */
const SCRIPT = `
const [addon, mode] = process.argv.slice(2);
const m = { exports: {} };
process.dlopen(m, addon);
const keep = [];
let garbage = [];
for (let i = 0; i < 5000; i++) {
  garbage.push(Buffer.allocUnsafe(16384 + (i % 7) * 1024).fill(1));
  if (i % 50 === 0) keep.push(Buffer.allocUnsafe(200).fill(2));
}
garbage = null;
globalThis.gc();
// V8 frees dead ArrayBuffers on a background thread after the collection.
setTimeout(() => {
  const before = process.memoryUsage.rss();
  const trimmed = mode === 'trim' ? m.exports.trim() : null;
  console.log(JSON.stringify({ before, after: process.memoryUsage.rss(), trimmed, kept: keep.length }));
}, 500);
`;

function heapProcess(mode: 'trim' | 'control'): { before: number; after: number; trimmed: boolean | null } {
  const file = join(tmp, 'heap.cjs');
  writeFileSync(file, SCRIPT);
  const r = spawnSync(process.execPath, ['--expose-gc', file, ADDON, mode], { encoding: 'utf8', timeout: 30_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { before: number; after: number; trimmed: boolean | null };
}

describe.skipIf(process.platform !== 'linux')("glibc's malloc_trim through the native helper", () => {
  it('the development build has the helper for this machine, and it loads', () => {
    expect(existsSync(ADDON), `${ADDON} (scripts/build.mjs builds it with the C compiler)`).toBe(true);
    const load = loadMallocTrimFrom(ADDON);
    expect(load.reason).toBeUndefined();
    expect(typeof load.trim).toBe('function');
    expect(typeof load.trim?.()).toBe('boolean');
  });

  it('gives the free pages inside the heap back to the kernel, which free() alone does not', () => {
    const MiB = 1024 * 1024;
    const control = heapProcess('control');
    const trimmed = heapProcess('trim');
    // Without the trim, glibc keeps (nearly) all of the 96 MiB it was given back.
    expect(control.before - control.after).toBeLessThan(8 * MiB);
    expect(control.before).toBeGreaterThan(trimmed.after + 48 * MiB);
    expect(trimmed.trimmed).toBe(true);
    expect(trimmed.before - trimmed.after).toBeGreaterThan(48 * MiB);
  });

  it("sets glibc's trim and mapping thresholds, and refuses what is not two positive 32-bit integers", () => {
    // In a process of its own: the thresholds are the whole process's.
    const script = `
      const m = { exports: {} };
      process.dlopen(m, process.argv[1]);
      const t = m.exports.thresholds;
      console.log(JSON.stringify([t(256 * 1024 * 1024, 32 * 1024 * 1024), t(128 * 1024, 128 * 1024), t(0, 1), t(1, 0), t(-1, 1), t('1', 1), t(1), t(), t(2 ** 31, 1)]));`;
    const r = spawnSync(process.execPath, ['-e', script, ADDON], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([true, true, false, false, false, false, false, false, false]);
    expect(typeof loadMallocTrimFrom(ADDON).thresholds).toBe('function');
  });

  it('names the process (/proc/PID/comm) and leaves its command line alone; refuses a name of no or over 15 bytes', () => {
    // In this test worker, named back afterwards.
    const helper = loadMallocTrimFrom(ADDON);
    const comm = (): string => readFileSync('/proc/self/comm', 'utf8').trim();
    const was = comm();
    const cmdline = readFileSync('/proc/self/cmdline', 'utf8');
    try {
      expect(nameProcess(() => helper)).toBeNull();
      expect(comm()).toBe(PROCESS_NAME);
      expect(readFileSync('/proc/self/cmdline', 'utf8')).toBe(cmdline);
      const EINVAL = 22;
      expect([helper.threadName!(''), helper.threadName!('sixteen-bytes-xx'), helper.threadName!(7 as never)]).toEqual([EINVAL, EINVAL, EINVAL]);
      expect(comm()).toBe(PROCESS_NAME);
    } finally {
      helper.threadName!(was);
    }
    const none = loadMallocTrimFrom(join(tmp, 'absent.node'));
    expect(nameProcess(() => none)).toBe(none.reason);
  });

  it('a missing or broken helper is a reason, not an exception', () => {
    const missing = loadMallocTrimFrom(join(tmp, 'absent.node'));
    expect(missing.trim).toBeNull();
    expect(missing.reason).toContain('absent.node');
    const notElf = join(tmp, 'text.node');
    writeFileSync(notElf, 'not a shared library\n');
    const broken = loadMallocTrimFrom(notElf);
    expect(broken.trim).toBeNull();
    expect(broken.reason).toMatch(/\S/);
  });
});
