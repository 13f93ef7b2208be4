import { describe, expect, it } from 'vitest';
import { AUTO_THROUGHPUT_MIN_MEMORY_BYTES, gcModeFor } from '../../agent/gc-mode.js';

const GiB = 1024 ** 3;

describe('runtime.gc', () => {
  it('auto: throughput from 2 GiB of memory (as the kernel reports it), memory below', () => {
    expect(AUTO_THROUGHPUT_MIN_MEMORY_BYTES).toBe(2 * GiB);
    expect(gcModeFor('auto', 0.5 * GiB)).toBe('memory');
    expect(gcModeFor('auto', 1 * GiB)).toBe('memory');
    expect(gcModeFor('auto', 1.7 * GiB)).toBe('memory');
    expect(gcModeFor('auto', 1.85 * GiB)).toBe('throughput'); // a 2 GiB board reports a little less
    expect(gcModeFor('auto', 8 * GiB)).toBe('throughput');
  });

  it('an explicit setting wins whatever the memory', () => {
    expect(gcModeFor('memory', 64 * GiB)).toBe('memory');
    expect(gcModeFor('throughput', 0.5 * GiB)).toBe('throughput');
  });
});
