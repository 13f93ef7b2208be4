// Throughput with each party on a computer of its own: the user's (this load generator with
// `forward` or `ssh`), the hub, and the device (the agent or `sshd`, with the target service), each
// held to a share of a core by a CPU quota (bench/lib/computers.mjs). Needs root (cgroups).
//   node bench/computers.mjs [--share 0.5 | --share user=0.6,hub=0.6,device=0.3] [--period-us 10000]
//     [--mib 512] [--runs 3] [--max-s 20] [--streams 1,8] [--paths devstreams,ssh,minimal-mux] [--json]
//     [--node-args "--perf-basic-prof"] [--agent-node-args "..."]   (node options for all, for devstreams' agent alone)
// Prints, per path and transfer, MB/s (median, min-max over the runs), its ratio to `ssh -L` (the
// median of the runs' own ratios), and per computer its CPU as a fraction of its share, its CPU ns
// per byte, and the fraction of quota periods in which the quota held it back; then each process's
// CPU ns per byte (`load` is the load generator, this process).
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { onComputers, parseShares } from './lib/computers.mjs';
import { findCpuController, quotaFiles } from './lib/cpu-quota.mjs';
import { startDevstreams, startMinimal, startSsh, startTarget } from './lib/stack.mjs';
import { MiB, fmt, fmtRange, pairedRatio } from './lib/stats.mjs';
import { option } from './lib/args.mjs';

let shares;
const periodUs = Number(option('--period-us', '10000'));
try {
  shares = parseShares(option('--share', '0.5'));
  quotaFiles('v2', shares.user, periodUs); // throws for a period that means nothing
} catch (err) {
  console.error(`bench/computers.mjs: ${err.message}`);
  process.exit(1);
}
const wanted = option('--paths', 'devstreams,ssh').split(',');
const json = process.argv.includes('--json');
const nodeArgs = option('--node-args', '').split(' ').filter(Boolean);
const agentNodeArgs = option('--agent-node-args', '').split(' ').filter(Boolean);
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
if (!findCpuController()) {
  console.error('bench/computers.mjs: no cgroup cpu controller to write to; run it as root on Linux (cgroup v1 cpu, or v2 with cpu.max)');
  process.exit(1);
}

const target = await startTarget();
const paths = [];
let out;
try {
  if (wanted.includes('devstreams')) paths.push(await startDevstreams(target.port, { nodeArgs, agentNodeArgs }));
  if (wanted.includes('minimal-mux')) paths.push(await startMinimal(target.port, { nodeArgs, mux: true }));
  if (wanted.includes('ssh')) paths.push(await startSsh(target.port));
  out = await onComputers(paths, target.proc.pid, {
    shares,
    periodUs,
    bytes: Number(option('--mib', '512')) * MiB,
    runs: Number(option('--runs', '3')),
    maxS: Number(option('--max-s', '20')),
    streams: option('--streams', '1').split(',').map(Number),
    log,
  });
} finally {
  for (const p of paths.reverse()) await p.stop();
  await target.proc.stop();
}

if (json) console.log(JSON.stringify(out));
else {
  const s = Object.entries(out.shares).map(([c, v]) => `${c} ${v}`).join(', ');
  console.log(`each computer held to a share of a core (${s}; period ${out.periodUs} us), up to ${fmt(out.bytes / MiB)} MiB per transfer, ${out.runs} runs`);
  const ssh = out.paths['ssh -L'];
  for (const [name, byKey] of Object.entries(out.paths)) {
    for (const [key, f] of Object.entries(byKey)) {
      const vs = ssh && name !== 'ssh -L' ? ` · ${pairedRatio(f.mbps, ssh[key].mbps).toFixed(2)}x ssh` : '';
      const cs = Object.keys(f.load).map((c) => `${c} ${fmt(f.load[c] * 100)} % (${fmt(f.nsPerByte[c], 2)} ns/B, held back ${fmt(f.held[c] * 100)} %)`).join(', ');
      const parties = Object.entries(f.partyNsPerByte).map(([n, v]) => `${n} ${fmt(v, 2)}`).join(', ');
      console.log(`${name.padEnd(16)} ${key.padEnd(6)} ${fmtRange(f.mbps)} MB/s${vs}; ${cs}\n${''.padEnd(24)}ns/B by process: ${parties}`);
    }
  }
}
