// Small statistics and formatting helpers for the benchmark.
export function pct(values, p) {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

/** Median, min and max of repeated runs. */
export function summary(values) {
  return { median: pct(values, 0.5), min: Math.min(...values), max: Math.max(...values), runs: values.length };
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
