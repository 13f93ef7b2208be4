import { describe, expect, it } from 'vitest';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { busiest, pairedRatio, summary } from '../../bench/lib/stats.mjs';

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

// bench/lib/stats.mjs busiest: the row "busiest process CPU ns/B", what caps one stream when each
// of a tunnel's processes has a core of its own.
describe('the busiest process of a transfer', () => {
  it('is the one that spent the most CPU, per byte carried, with its name', () => {
    expect(busiest([3e9, 5e9, 4e9], ['forward', 'hub', 'agent'], 2e9)).toEqual({ ns: 2.5, name: 'hub' });
    expect(busiest([7e9, 1e9], ['ssh', 'sshd'], 2e9)).toEqual({ ns: 3.5, name: 'ssh' });
  });
});
