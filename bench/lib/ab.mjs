// The pieces of bench/ab.mjs that decide what it compares (tested in test/bench/ab.test.ts).

/**
 * Which build runs first in each pair: the Thue-Morse order (A B, B A, B A, A B, B A, A B, A B, B A,
 * ...: pair i starts with A when i has an even number of ones in binary), so that neither build
 * always runs second and a steady drift of the host's speed through the series, linear or curved,
 * falls on both builds alike.
 */
export function pairOrder(pairs) {
  const ones = (i) => (i === 0 ? 0 : (i & 1) + ones(i >>> 1));
  return Array.from({ length: pairs }, (_, i) => (ones(i) % 2 === 0 ? ['A', 'B'] : ['B', 'A']));
}

/** bench/per-process.mjs's JSON lines as flat figures: "1 up MB/s", "1 up agent ns/B", "ping p50 us", ... */
export function figures(lines) {
  const f = {};
  for (const l of lines) {
    if (l.kind === 'transfer') {
      const at = `${l.streams} ${l.dir}`;
      f[`${at} MB/s`] = l.mbps;
      for (const [n, v] of Object.entries(l.nsPerByte)) f[`${at} ${n} ns/B`] = v;
    } else if (l.kind === 'ping') {
      f['ping p50 us'] = l.p50;
      f['ping p99 us'] = l.p99;
      for (const [n, v] of Object.entries(l.usPerRoundTrip)) f[`ping ${n} us per round trip`] = v;
    }
  }
  return f;
}
