// Where the CPU per byte goes, process by process: devstreams (forward, hub, agent) or the minimal
// wss tunnel (service side, relay, agent side), for one stream and for 8 streams, up and down.
//   node bench/per-process.mjs devstreams|minimal|minimal-mux [--mib 256] [--node-args "--max-semi-space-size=1"]
//     [--agent-exe dist/bin/devstreams-linux-x64]   (devstreams' agent as the single executable)
//     [--agent-node-args "--initial-old-space-size=96"]   (node options for devstreams' agent alone)
//     [--agent-env K=V,...]   (environment for devstreams' agent alone, e.g. OPENSSL_ia32cap=~0x200000200000000:
//      a CPU without AES-NI, as a Raspberry Pi 3 or 4 has no AES instructions)
//     [--streams 1,8] [--dirs up,down] [--no-ping]   (only these transfers: to profile one of them)
//     [--json]   (one JSON object per line instead: bench/ab.mjs reads them)
// Prints one line per transfer: MB/s, CPU ns/B and minor page faults per MB of each of the three processes; then a 1-byte
// ping-pong (10,000 round trips): RTT p50/p99 and CPU us per round trip of each process.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { cpuNs, minorFaults } from './lib/procs.mjs';
import { startDevstreams, startMinimal, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { MiB, pct } from './lib/stats.mjs';
import { option } from './lib/args.mjs';
import { warnIfStale } from './lib/exe-fresh.mjs';

const which = process.argv[2] ?? 'devstreams';
const mib = Number(option('--mib', '256'));
const nodeArgs = option('--node-args', '').split(' ').filter(Boolean);
const agentExe = option('--agent-exe');
const agentNodeArgs = option('--agent-node-args', '').split(' ').filter(Boolean);
warnIfStale(agentExe);
const agentEnv = Object.fromEntries(option('--agent-env', '').split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const streamCounts = option('--streams', '1,8').split(',').map(Number);
const dirs = option('--dirs', 'up,down').split(',');
const names = which.startsWith('minimal') ? ['service', 'relay', 'agent'] : ['forward', 'hub', 'agent'];
const json = process.argv.includes('--json');
/** Each process's value, by name. */
const byName = (f) => Object.fromEntries(names.map((n, k) => [n, f(k)]));
/** "forward 1.92, hub 1.86, agent 1.86" */
const listed = (o, digits) => Object.entries(o).map(([n, v]) => `${n} ${v.toFixed(digits)}`).join(', ');
const target = await startTarget();
const path = which.startsWith('minimal') ? await startMinimal(target.port, { nodeArgs, mux: which === 'minimal-mux' }) : await startDevstreams(target.port, { nodeArgs, agentExe, agentNodeArgs, agentEnv });
try {
  await load.download(path.port, 16 * MiB); // warm-up
  for (const streams of streamCounts) {
    for (const dir of dirs) {
      const c0 = path.pids.map(cpuNs);
      const f0 = path.pids.map(minorFaults);
      const x = streams === 1
        ? await (dir === 'up' ? load.upload(path.port, mib * MiB) : load.download(path.port, mib * MiB))
        : await load.parallel(path.port, 8, dir, (mib / 8) * MiB);
      const c1 = path.pids.map(cpuNs);
      const f1 = path.pids.map(minorFaults);
      const mbps = x.bytes / 1e6 / x.secs;
      const nsPerByte = byName((k) => (c1[k] - c0[k]) / x.bytes);
      // Pages faulted in per MB carried: memory given back to the kernel and taken again (protocol/malloc-trim.ts).
      const faultsPerMB = byName((k) => (f1[k] - f0[k]) / (x.bytes / 1e6));
      if (json) console.log(JSON.stringify({ kind: 'transfer', streams, dir, mbps, nsPerByte, faultsPerMB }));
      else console.log(`${which} ${streams} stream(s) ${dir}: ${mbps.toFixed(0)} MB/s; ns/B ${listed(nsPerByte, 2)}; page faults per MB ${listed(faultsPerMB, 1)}`);
    }
  }
  if (!process.argv.includes('--no-ping')) await pingPong();
} finally {
  await path.stop();
  await target.proc.stop();
}

async function pingPong() {
  const c0 = path.pids.map(cpuNs);
  const rtts = await load.pingPong(path.port, 10_000, 60);
  const c1 = path.pids.map(cpuNs);
  const usPerRoundTrip = byName((k) => (c1[k] - c0[k]) / 1e3 / rtts.length);
  const [p50, p99] = [pct(rtts, 0.5), pct(rtts, 0.99)];
  if (json) console.log(JSON.stringify({ kind: 'ping', p50, p99, usPerRoundTrip }));
  else console.log(`${which} ping-pong: RTT p50 ${p50.toFixed(0)} us, p99 ${p99.toFixed(0)} us; CPU us per round trip ${listed(usPerRoundTrip, 0)}`);
}
