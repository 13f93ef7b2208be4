// Summarises .cpuprofile files (node --cpu-prof): self time per function, top N, per file.
// Usage: node bench/profile-summary.mjs DIR_OR_FILES... [--top N]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const ti = args.indexOf('--top');
const top = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 25;
const ci = args.indexOf('--callers');
const callersOf = ci >= 0 ? args.splice(ci, 2)[1] : null;
const files = args.flatMap((a) => (statSync(a).isDirectory() ? readdirSync(a).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(a, f)) : [a]));
for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const stacks = new Map();
  const self = new Map();
  const dt = p.timeDeltas;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]);
    const { functionName, url, lineNumber } = n.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}`;
    const d = dt[i] ?? 0;
    total += d;
    self.set(key, (self.get(key) ?? 0) + d);
    if (callersOf && (functionName || '(anonymous)') === callersOf) {
      const chain = [];
      for (let q = parent.get(n.id); q && chain.length < 8; q = parent.get(q.id)) chain.push(`${q.callFrame.functionName || '(anon)'}:${q.callFrame.lineNumber + 1}`);
      const k = chain.join(' < ');
      stacks.set(k, (stacks.get(k) ?? 0) + d);
    }
  }
  const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
  for (const [k, v] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 6)) console.log(`  ${(v / 1e3).toFixed(1)} ms  ${callersOf} < ${k}`);
  console.log(`\n${file}: ${(total / 1e3).toFixed(0)} ms sampled, ${((total - idle) / 1e3).toFixed(0)} ms busy`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(v / 1e3).toFixed(1).padStart(9)} ms ${((100 * v) / (total || 1)).toFixed(1).padStart(5)}%  ${k}`);
  }
}
