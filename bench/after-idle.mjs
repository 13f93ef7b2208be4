// Transfers that each start after an idle period, as a device's do (issue 6, fifteenth round): one
// stream through devstreams (forward, hub, agent), `--gap` seconds idle before each (the processes
// give memory back after 10 s, protocol/idle-memory.ts), alternating up and down. The full bench's
// series come a minute apart, so this is the state it measures devstreams in; bench/per-process.mjs
// runs its transfers back to back.
//   node bench/after-idle.mjs [--gap 13] [--cycles 3] [--mib 512] [--gcs] [--memory] [--first-byte] [--agent-gc memory|throughput] [--agent-node-args "..."]
//   DEVSTREAMS_CLI=/tmp/w/base/dist/devstreams.mjs node bench/after-idle.mjs   (another build, for A/B)
// Prints one line per transfer: the idle period before it, MB/s, CPU ns/B of each process, and with
// --gcs the mark-compact and scavenge collections each process ran during it (--trace-gc); with
// --memory each process's page faults per MB carried and its RSS after the transfer. With
// --first-byte, the first stream after each idle period is a set-up alone (connect to the first
// byte back, bench/lib/load.mjs firstByte), timed with each process's CPU, before the transfer.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { cpuNs, minorFaults, rss } from './lib/procs.mjs';
import { startDevstreams, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { MiB } from './lib/stats.mjs';
import { option } from './lib/args.mjs';

const gap = Number(option('--gap', '13'));
const cycles = Number(option('--cycles', '3'));
const mib = Number(option('--mib', '512'));
const gcs = process.argv.includes('--gcs');
const memory = process.argv.includes('--memory');
const firstByte = process.argv.includes('--first-byte');
const agentGc = option('--agent-gc'); // the agent's runtime.gc (agent/gc-mode.ts); default auto
const agentNodeArgs = option('--agent-node-args', '').split(' ').filter(Boolean); // node options for the agent alone
const target = await startTarget();
const path = await startDevstreams(target.port, { nodeArgs: gcs ? ['--trace-gc'] : [], agentGc, agentNodeArgs });
const procs = [['forward', path.forward], ['hub', path.hub], ['agent', path.agent]];
try {
  await load.download(path.port, 16 * MiB); // warm-up
  for (let i = 0; i < cycles; i++) {
    for (const dir of ['up', 'down']) {
      await new Promise((r) => setTimeout(r, gap * 1000));
      for (const [, p] of procs) p.lines.length = 0;
      if (firstByte) {
        const f0 = path.pids.map(cpuNs);
        const ms = await load.firstByte(path.port);
        const f1 = path.pids.map(cpuNs);
        console.log(`after ${gap} s idle, first stream: set-up ${ms.toFixed(1)} ms; CPU ms ${procs.map(([n], k) => `${n} ${((f1[k] - f0[k]) / 1e6).toFixed(1)}`).join(', ')}`);
      }
      const c0 = path.pids.map(cpuNs);
      const f0 = path.pids.map(minorFaults);
      const x = await (dir === 'up' ? load.upload(path.port, mib * MiB) : load.download(path.port, mib * MiB));
      const c1 = path.pids.map(cpuNs);
      const f1 = path.pids.map(minorFaults);
      const ns = procs.map(([n], k) => `${n} ${((c1[k] - c0[k]) / x.bytes).toFixed(2)}`).join(', ');
      const gc = gcs ? `; collections ${procs.map(([n, p]) => `${n} ${p.lines.filter((l) => l.includes('Mark-Compact')).length} mc / ${p.lines.filter((l) => l.includes('Scavenge')).length} sc`).join(', ')}` : '';
      const mem = memory ? `; faults per MB, RSS after ${procs.map(([n], k) => `${n} ${((f1[k] - f0[k]) / (x.bytes / 1e6)).toFixed(1)}, ${(rss(path.pids[k]) / 1e6).toFixed(0)} MB`).join('; ')}` : '';
      console.log(`after ${gap} s idle, 1 stream ${dir}: ${(x.bytes / 1e6 / x.secs).toFixed(0)} MB/s; ns/B ${ns}${gc}${mem}`);
    }
  }
} finally {
  await path.stop();
  await target.proc.stop();
}
