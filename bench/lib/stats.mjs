// Small statistics and formatting helpers for the benchmark.
export function pct(values, p) {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

/** Median, min and max of repeated runs, and each run's value in run order. */
export function summary(values) {
  return { median: pct(values, 0.5), min: Math.min(...values), max: Math.max(...values), runs: values.length, values: [...values] };
}

/**
 * How `a` compares with `base` (two summaries of the same figure): the median of the ratios run by
 * run, each of a run's two values measured seconds apart, so that a drift of the machine between
 * runs does not enter the ratio; the ratio of the medians where the runs cannot be paired (a
 * summary without values, or with a different number of runs).
 */
export function pairedRatio(a, base) {
  const x = a?.values;
  const y = base?.values;
  if (x?.length && x.length === y?.length) return pct(x.map((v, i) => v / y[i]), 0.5);
  return a.median / base.median;
}

/**
 * The busiest of a tunnel's processes over one transfer: the most CPU per byte any one of them
 * spent, and its name. With each process on a computer (or core) of its own, as in a deployment,
 * that process is the one that caps a stream: one stream can carry at most 1 / `ns` bytes a
 * nanosecond. `cpuNs` is each process's CPU time over the transfer, in the order of `names`.
 */
export function busiest(cpuNs, names, bytes) {
  let k = 0;
  for (let i = 1; i < cpuNs.length; i++) if (cpuNs[i] > cpuNs[k]) k = i;
  return { ns: cpuNs[k] / bytes, name: names[k] };
}

export const MB = 1e6;
export const MiB = 1024 * 1024;

export function fmt(x, digits = 0) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min–max)" */
export function fmtRange(s, digits = 0) {
  if (!s) return '–';
  if (s.runs === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}
