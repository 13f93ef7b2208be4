import { describe, expect, it } from 'vitest';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { pairedRatio, summary } from '../../bench/lib/stats.mjs';

// bench/lib/stats.mjs pairedRatio: how `npm run bench` compares devstreams with ssh -L (and the
// targets it checks), run by run, so that the machine's drift between runs stays out of a ratio.
describe('the benchmark\'s ratios', () => {
  it('are the median of the runs\' own ratios, not the ratio of the medians', () => {
    // Within runs 1 and 2, a is 0.9x b (the machine at half speed through run 2); run 3 is an outlier.
    const a = summary([90, 45, 45]);
    const b = summary([100, 50, 100]);
    expect(pairedRatio(a, b)).toBeCloseTo(0.9, 10); // the median of 0.9, 0.9, 0.45
    expect(a.median / b.median).toBeCloseTo(0.45, 10);
  });

  it('keep each run\'s value in run order', () => {
    expect(summary([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, runs: 3, values: [3, 1, 2] });
  });

  it('fall back to the ratio of the medians for summaries without paired values', () => {
    expect(pairedRatio({ median: 300 }, { median: 400 })).toBe(0.75);
    expect(pairedRatio(summary([3]), summary([4, 4]))).toBe(0.75); // runs that do not pair
  });
});
