import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MEMORY_HEAP_GROWING_PERCENT, RELAY_HEAP_GROWING_PERCENT, YOUNG_BUFFER_TRIGGER_MB, scavengeYoungBuffersEarly, tuneGcForRelaying } from '../../protocol/gc-tuning.js';
// @ts-expect-error: a build script in plain JavaScript
import { shippedNode } from '../../scripts/shipped-node.mjs';
import { runBundledChild } from '../helpers/bundled-child.js';

/** The flags tuneGcForRelaying hands V8, in order, for a V8 of `version`. */
function flagsSet(on: boolean | undefined, version: string): { changed: boolean; flags: string[] } {
  const flags: string[] = [];
  const changed = tuneGcForRelaying(on, { version, setFlags: (f) => flags.push(f) });
  return { changed, flags };
}

describe('tuneGcForRelaying', () => {
  it('on V8 13 and later (Node 24): external memory counts in the global limit and the heap grows by a fixed factor', () => {
    expect(RELAY_HEAP_GROWING_PERCENT).toBeGreaterThan(0);
    for (const version of ['13.6.233.17-node.44', '14.1.0']) {
      expect(flagsSet(undefined, version)).toEqual({
        changed: true,
        flags: ['--external-memory-accounted-in-global-limit', `--heap-growing-percent=${RELAY_HEAP_GROWING_PERCENT}`],
      });
    }
  });

  it("off (an agent in gc: memory, or reloaded into it): V8's own external-memory handling, the memory mode's fixed growing factor", () => {
    expect(MEMORY_HEAP_GROWING_PERCENT).toBeGreaterThan(0);
    expect(MEMORY_HEAP_GROWING_PERCENT).toBeLessThan(RELAY_HEAP_GROWING_PERCENT);
    expect(flagsSet(false, '13.6.233.17-node.44')).toEqual({
      changed: true,
      flags: ['--no-external-memory-accounted-in-global-limit', `--heap-growing-percent=${MEMORY_HEAP_GROWING_PERCENT}`],
    });
  });

  it('before V8 13 (Node 20) nothing is set: the option does not exist there', () => {
    expect(flagsSet(true, '11.3.244.8-node.33')).toEqual({ changed: false, flags: [] });
    expect(flagsSet(false, '12.4.254.21-node.33')).toEqual({ changed: false, flags: [] });
  });
});

describe('scavengeYoungBuffersEarly', () => {
  it("on V8 13 and later sets V8's new-space capacity to a quarter of the young-buffer trigger; before, nothing", () => {
    for (const [version, changed] of [['13.6.233.17-node.63', true], ['14.1.0', true], ['11.3.244.8-node.33', false], ['12.4.254.21-node.33', false]] as const) {
      const flags: string[] = [];
      expect(scavengeYoungBuffersEarly({ version, setFlags: (f) => flags.push(f) })).toBe(changed);
      expect(flags).toEqual(changed ? [`--scavenger-max-new-space-capacity-mb=${YOUNG_BUFFER_TRIGGER_MB / 4}`] : []);
    }
  });

  // The child reads 192 MiB from a loopback socket as a relay does, with the relays' collection
  // settings; the run without the call is the control that shows what the call changes.
  const relay = async (young: boolean): Promise<{ set: boolean; read: number; peakMB: number }> => {
    const r = await runBundledChild(join(import.meta.dirname, 'fixtures/young-buffers-child.ts'), { node: shippedNode() as string, env: { YOUNG: young ? '1' : '0' } });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as { set: boolean; read: number; peakMB: number };
  };

  it("in the executables' Node: a relay's dead read buffers are collected every few MB, not every 60+", async () => {
    const early = await relay(true);
    expect(early.set).toBe(true);
    expect(early.read).toBe(192 * 2 ** 20);
    expect(early.peakMB).toBeLessThan(YOUNG_BUFFER_TRIGGER_MB * 2);
    const control = await relay(false);
    expect(control.read).toBe(192 * 2 ** 20);
    expect(control.peakMB).toBeGreaterThan(YOUNG_BUFFER_TRIGGER_MB * 2.5);
  });
});

describe('collectGarbage, the idle collection (protocol/idle-memory.ts)', () => {
  it("in the executables' Node: drops the bytecode of functions not running, and they run again as before", async () => {
    const r = await runBundledChild(join(import.meta.dirname, 'fixtures/idle-collection-child.ts'), { node: shippedNode() as string });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { before: number; after: number; ms: number; same: boolean; again: number };
    expect(out.ms).toBeGreaterThanOrEqual(0);
    expect(out.before).toBeGreaterThan(500_000); // 2,000 functions' bytecode
    expect(out.after).toBeLessThan(out.before / 10);
    expect(out.same).toBe(true); // compiled again from their source
    expect(out.again).toBeGreaterThan(out.after); // ... which is where their bytecode came back from
  });

  it('with dropBytecode: false (devstreams forward) keeps it', async () => {
    const r = await runBundledChild(join(import.meta.dirname, 'fixtures/idle-collection-child.ts'), { node: shippedNode() as string, env: { KEEP_BYTECODE: '1' } });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { before: number; after: number; same: boolean };
    expect(out.after).toBeGreaterThan(out.before / 2);
    expect(out.same).toBe(true);
  });
});
