// Memory per open stream alone (issue 6, figure 5): N streams open at once, each carrying checked
// bytes, through a path started for it; RSS of each process before (after 20 warm-up streams) and
// at the peak, and KB per open stream.
//   node bench/concurrency.mjs devstreams|minimal|minimal-mux [--streams 1000] [--bytes 4096]
// minimal-mux is the floor of a multiplexed design (bench/lib/minimal-mux-tunnel.mjs).
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { startDevstreams, startMinimal, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { option } from './lib/args.mjs';

const which = process.argv[2] ?? 'devstreams';
const n = Number(option('--streams', '1000'));
const bytes = Number(option('--bytes', '4096'));
const names = which === 'devstreams' ? ['forward', 'hub', 'agent'] : ['service', 'relay', 'agent'];
const target = await startTarget();
const path = which === 'devstreams' ? await startDevstreams(target.port) : await startMinimal(target.port, { mux: which === 'minimal-mux' });
try {
  const { failed, before, peak } = await load.openAtOnce(path, n, bytes);
  const per = names.map((name, k) => `${name} ${(before[k] / 1e6).toFixed(1)} -> ${(peak[k] / 1e6).toFixed(1)} MB (${((peak[k] - before[k]) / n / 1e3).toFixed(1)} KB per stream)`);
  console.log(`${which}: ${n} streams open at once, ${failed} failed; ${per.join('; ')}`);
} finally {
  await path.stop();
  await target.proc.stop();
}
