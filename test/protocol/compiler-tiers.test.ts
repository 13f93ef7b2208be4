import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { holdOptimizingCompilers, optimizingCompilersHeld, releaseOptimizingCompilers } from '../../protocol/index.js';
// @ts-expect-error: a build script in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';
import { runBundledChild } from '../helpers/bundled-child.js';

// protocol/compiler-tiers.ts: the agent holds Maglev and TurboFan back until its first stream.

describe('holding and releasing the optimizing compilers', () => {
  it('release() without a hold sets nothing (the hub, the service side, the SDK)', () => {
    const flags: string[] = [];
    expect(releaseOptimizingCompilers((f) => flags.push(f))).toBe(false);
    expect(flags).toEqual([]);
  });

  it('hold() turns both off; the first release() turns both on, and only the first', () => {
    const flags: string[] = [];
    holdOptimizingCompilers((f) => flags.push(f));
    expect(optimizingCompilersHeld()).toBe(true);
    expect(flags).toEqual(['--no-maglev', '--no-turbofan']);
    expect(releaseOptimizingCompilers((f) => flags.push(f))).toBe(true);
    expect(releaseOptimizingCompilers((f) => flags.push(f))).toBe(false);
    expect(optimizingCompilersHeld()).toBe(false);
    expect(flags).toEqual(['--no-maglev', '--no-turbofan', '--maglev', '--turbofan']);
  });

  // V8's %GetOptimizationStatus bits (src/runtime/runtime.h): 16 optimized, 32 Maglev, 64 TurboFan.
  const OPTIMIZED = 16 | 32 | 64;

  it("in V8 (the executables' Node): a hot function stays unoptimized while held and is optimized once released", async () => {
    const r = await runBundledChild(join(import.meta.dirname, 'fixtures/compiler-tiers-child.ts'), {
      node: shippedNode() as string,
      args: ['--allow-natives-syntax'],
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { held: number; released: boolean; after: number; releasedAgain: boolean };
    expect(out.held & OPTIMIZED).toBe(0);
    expect(out.released).toBe(true);
    expect(out.after & OPTIMIZED).not.toBe(0);
    expect(out.releasedAgain).toBe(false);
  });
});
