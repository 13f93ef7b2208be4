import { describe, expect, it } from 'vitest';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { figures, pairOrder } from '../../bench/lib/ab.mjs';

// bench/ab.mjs: two builds compared pair by pair, neither always second (the host drifts).
describe('the A/B comparison of two builds', () => {
  it('orders each pair so that neither build always runs second, nor takes the ends of a drift (Thue-Morse)', () => {
    expect(pairOrder(4).flat().join('')).toBe('ABBABAAB');
    expect(pairOrder(8).flat().join('')).toBe('ABBABAABBAABABBA');
    // Over a whole block of pairs, each build's run positions add up the same: a linear drift cancels.
    const positions = (who: string) => pairOrder(8).flat().flatMap((w: string, i: number) => (w === who ? [i] : []));
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    expect(sum(positions('A'))).toBe(sum(positions('B')));
  });

  it('reads per-process.mjs --json lines as named figures', () => {
    const f = figures([
      { kind: 'transfer', streams: 1, dir: 'up', mbps: 250, nsPerByte: { forward: 1.9, hub: 1.8, agent: 1.7 }, faultsPerMB: { forward: 1 } },
      { kind: 'ping', p50: 320, p99: 1300, usPerRoundTrip: { agent: 115 } },
    ]);
    expect(f).toEqual({
      '1 up MB/s': 250,
      '1 up forward ns/B': 1.9,
      '1 up hub ns/B': 1.8,
      '1 up agent ns/B': 1.7,
      'ping p50 us': 320,
      'ping p99 us': 1300,
      'ping agent us per round trip': 115,
    });
  });
});
