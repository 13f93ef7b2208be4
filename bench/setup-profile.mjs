// Where the CPU of a stream set-up goes, process by process: the set-up rate series alone (N
// streams, 50 in flight) through devstreams, with CPU time per set-up of forward, hub and agent.
//   node bench/setup-profile.mjs [--streams 1000] [--cpu-prof DIR] [--node-args "..."] [--log-level warn] [--path minimal|minimal-mux]
// --path minimal profiles the minimal wss tunnel instead (service, relay, agent), the floor to compare with;
// minimal-mux the floor of a multiplexed design (bench/lib/minimal-mux-tunnel.mjs).
// With --cpu-prof, the three processes write V8 CPU profiles to DIR (see profile-summary.mjs).
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { cpuNs } from './lib/procs.mjs';
import { startDevstreams, startMinimal, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { option } from './lib/args.mjs';

const streams = Number(option('--streams', '1000'));
const profDir = option('--cpu-prof');
const nodeArgs = [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), ...(option('--node-args', '')).split(' ').filter(Boolean)];
const target = await startTarget();
const logLevel = option('--log-level'); // the hub's and the agent's (info by default)
const which = option('--path', 'devstreams');
const minimal = which.startsWith('minimal');
const path = minimal
  ? await startMinimal(target.port, { nodeArgs, mux: which === 'minimal-mux' })
  : await startDevstreams(target.port, { nodeArgs, ...(logLevel ? { logLevel } : {}) });
const names = minimal ? ['service', 'relay', 'agent'] : ['forward', 'hub', 'agent'];
try {
  await load.setupRate(path.port, 100, 50, 8); // warm-up
  const c0 = path.pids.map(cpuNs);
  const r = await load.setupRate(path.port, streams, 50, 30);
  const c1 = path.pids.map(cpuNs);
  const per = names.map((n, k) => `${n} ${((c1[k] - c0[k]) / 1e6 / r.started).toFixed(2)}`).join(', ');
  const total = c1.reduce((a, c, k) => a + c - c0[k], 0) / 1e6 / r.started;
  console.log(`set-up rate ${r.rate.toFixed(0)}/s over ${r.started} streams (${r.errors.length} errors); CPU ms per set-up: ${per}; total ${total.toFixed(2)}`);
} finally {
  await path.stop();
  await target.proc.stop();
}
