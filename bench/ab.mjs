// Two builds of devstreams compared the way this host allows (issue 6): bench/per-process.mjs on
// build A and on build B in turn, pair by pair, each pair's order from the Thue-Morse sequence (A B,
// B A, B A, A B, ...: bench/lib/ab.mjs pairOrder), so that neither build always runs second while the
// host's speed drifts (the twenty-third round took that drift for a 10-15 % gain once). For each
// figure it prints both builds' values in run order and B against A: the median of the pairs' own
// ratios (as bench/lib/stats.mjs pairedRatio), with their min and max. The same build on both sides (an
// A/A run) shows what the method can resolve on this host: bench/README.md.
//   node bench/ab.mjs A/dist/devstreams.mjs B/dist/devstreams.mjs [--pairs 4] [-- per-process options]
// e.g. node bench/ab.mjs /tmp/base/dist/devstreams.mjs dist/devstreams.mjs --pairs 6 -- --mib 512 --streams 1 --dirs up
// Each build is a dist/devstreams.mjs (a git worktree, built); the processes run as
// `DEVSTREAMS_CLI=... node bench/per-process.mjs devstreams --json ...`.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { ROOT } from './lib/stack.mjs';
import { fmt, pct } from './lib/stats.mjs';
import { option } from './lib/args.mjs';
import { figures, pairOrder } from './lib/ab.mjs';

const argv = process.argv.slice(2);
const dashes = argv.indexOf('--');
const own = dashes >= 0 ? argv.slice(0, dashes) : argv;
const passOn = dashes >= 0 ? argv.slice(dashes + 1) : [];
const builds = own.filter((a, i) => !a.startsWith('--') && !own[i - 1]?.startsWith('--')).map((p) => resolve(p));
const pairs = Number(option('--pairs', '4'));
if (builds.length !== 2 || !builds.every((b) => existsSync(b)) || !(pairs >= 1)) {
  console.error('usage: node bench/ab.mjs A/dist/devstreams.mjs B/dist/devstreams.mjs [--pairs 4] [-- per-process options]');
  process.exit(2);
}

/** One per-process run on `cli`: its figures, by name. */
async function measure(cli) {
  const child = spawn(process.execPath, [join(ROOT, 'bench/per-process.mjs'), 'devstreams', ...passOn, '--json'], {
    env: { ...process.env, DEVSTREAMS_CLI: cli },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`bench/per-process.mjs on ${cli} exited with ${code}`);
  return figures(out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)));
}

const runs = { A: [], B: [] };
for (const [i, pair] of pairOrder(pairs).entries()) {
  for (const which of pair) {
    process.stderr.write(`pair ${i + 1}/${pairs}: ${which}\n`);
    runs[which].push(await measure(which === 'A' ? builds[0] : builds[1]));
  }
}
console.log(`A ${builds[0]}\nB ${builds[1]}\n${pairs} pairs, in the Thue-Morse order (AB BA BA AB ...); B/A is the median of the pairs' ratios (min-max)`);
for (const key of Object.keys(runs.A[0])) {
  const a = runs.A.map((r) => r[key]);
  const b = runs.B.map((r) => r[key]);
  const ratios = b.map((v, i) => v / a[i]);
  const digits = key.endsWith('ns/B') ? 2 : 0;
  console.log(`${key}: A ${a.map((v) => fmt(v, digits)).join(', ')} | B ${b.map((v) => fmt(v, digits)).join(', ')} | B/A ${pct(ratios, 0.5).toFixed(3)} (${fmt(Math.min(...ratios), 3)}-${fmt(Math.max(...ratios), 3)}); medians ${fmt(pct(a, 0.5), digits)} -> ${fmt(pct(b, 0.5), digits)}`);
}
