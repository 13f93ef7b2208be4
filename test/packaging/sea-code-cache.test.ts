import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/proc.js';
// @ts-expect-error: build scripts in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';
// @ts-expect-error: build scripts in plain JavaScript
import { CACHE_COMMAND, codeCacheName, makeCodeCache } from '../../scripts/sea-code-cache.mjs';

// scripts/sea-main.cjs compiles the service program from a code cache made at build time
// (scripts/sea-code-cache.mjs), run here through scripts/sea-code-cache-run.cjs, which runs the real
// sea-main.cjs outside an executable, on the Node the executables carry.

/**
 * A stand-in service program: it does some work, changes a V8 flag as the service side does at
 * start (protocol/gc-tuning.ts), and prints what it computed.
 */
const PROGRAM = `
const v8 = require('node:v8');
function sum(n) { let s = 0; for (let i = 0; i < n; i++) s += i; return s; }
v8.setFlagsFromString('--heap-growing-percent=150');
process.stdout.write('sum ' + sum(100) + ' ' + process.argv.slice(2).join(' '));
`;
const FILE = 'devstreams-service.cjs';
let node: string;
let dir: string;

beforeAll(() => {
  node = shippedNode() as string;
  dir = mkdtempSync(join(tmpdir(), 'devstreams-code-cache-'));
  writeFileSync(join(dir, FILE), PROGRAM);
}, 600_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** sea-main.cjs run on `assets` with the runner: what the program printed and the runner's verdict on the cache. */
function check(assets: string): { out: string; verdict: string } {
  const verdict = join(assets, 'verdict');
  const r = spawnSync(node, [join(ROOT, 'scripts/sea-code-cache-run.cjs'), 'check', join(ROOT, 'scripts/sea-main.cjs'), assets, verdict, ...CACHE_COMMAND], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { out: r.stdout, verdict: readFileSync(verdict, 'utf8') };
}

describe('the service program\'s code cache', () => {
  it('is made after a run whose program changes V8 flags, and V8 takes it at the next start', () => {
    const cache = makeCodeCache(node, dir) as string; // throws unless V8 takes it
    expect(cache).toBe(join(dir, codeCacheName(FILE, process.arch)));
    expect(readFileSync(cache).length).toBeGreaterThan(0);
    const { out, verdict } = check(dir);
    expect(verdict).toBe('accepted');
    expect(out).toBe(`sum 4950 ${CACHE_COMMAND.join(' ')}`);
  });

  it('a cache that does not match is refused and the program compiles and runs as without one', () => {
    const other = mkdtempSync(join(tmpdir(), 'devstreams-code-cache-'));
    try {
      writeFileSync(join(other, FILE), PROGRAM.replace('sum(100)', 'sum(10)')); // another source
      copyFileSync(join(dir, codeCacheName(FILE, process.arch)), join(other, codeCacheName(FILE, process.arch)));
      expect(check(other)).toEqual({ out: `sum 45 ${CACHE_COMMAND.join(' ')}`, verdict: 'rejected' });
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('without a cache for this architecture the program compiles as before', () => {
    const other = mkdtempSync(join(tmpdir(), 'devstreams-code-cache-'));
    try {
      copyFileSync(join(dir, FILE), join(other, FILE));
      expect(existsSync(join(other, codeCacheName(FILE, process.arch)))).toBe(false);
      expect(check(other)).toEqual({ out: `sum 4950 ${CACHE_COMMAND.join(' ')}`, verdict: 'none' });
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
