import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { holdOptimizingCompilers, optimizingCompilersHeld, releaseMaglev } from '../../protocol/index.js';
// @ts-expect-error: a build script in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';
import { runBundledChild } from '../helpers/bundled-child.js';

// protocol/compiler-tiers.ts: the agent holds Maglev back until its first stream, and TurboFan for good.

describe('holding the optimizing compilers and releasing Maglev', () => {
  it('releaseMaglev() without a hold sets nothing (the hub, the service side, the SDK)', () => {
    const flags: string[] = [];
    expect(releaseMaglev((f) => flags.push(f))).toBe(false);
    expect(flags).toEqual([]);
  });

  it('hold() turns both off; the first releaseMaglev() turns Maglev on, and only the first', () => {
    const flags: string[] = [];
    holdOptimizingCompilers((f) => flags.push(f));
    expect(optimizingCompilersHeld()).toBe(true);
    expect(flags).toEqual(['--no-maglev', '--no-turbofan']);
    expect(releaseMaglev((f) => flags.push(f))).toBe(true);
    expect(releaseMaglev((f) => flags.push(f))).toBe(false);
    expect(optimizingCompilersHeld()).toBe(false);
    expect(flags).toEqual(['--no-maglev', '--no-turbofan', '--maglev']);
  });

  // V8's %GetOptimizationStatus bits (src/runtime/runtime.h): 16 optimized, 32 Maglev, 64 TurboFan.
  const OPTIMIZED = 16 | 32 | 64;
  const MAGLEV = 32;
  const TURBOFAN = 64;

  it("in V8 (the executables' Node): a hot function stays unoptimized while held, then Maglev optimizes it and TurboFan never does", async () => {
    const r = await runBundledChild(join(import.meta.dirname, 'fixtures/compiler-tiers-child.ts'), {
      node: shippedNode() as string,
      args: ['--allow-natives-syntax'],
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { held: number; released: boolean; after: number; releasedAgain: boolean };
    expect(out.held & OPTIMIZED).toBe(0);
    expect(out.released).toBe(true);
    expect(out.after & MAGLEV).not.toBe(0);
    expect(out.after & TURBOFAN).toBe(0);
    expect(out.releasedAgain).toBe(false);
  });
});
