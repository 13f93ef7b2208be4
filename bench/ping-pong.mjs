// A 1-byte ping-pong alone, for comparing builds (issue 6, figure 2): CPU per round trip of each
// process of devstreams (forward, hub, agent) or of the minimal wss tunnel (service, relay, agent),
// without the transfers that run before the ping-pong of bench/per-process.mjs and grow the heaps.
//   node bench/ping-pong.mjs devstreams|minimal|minimal-mux [--pings 20000] [--rounds 2] [--node-args "--cpu-prof ..."]
//   node bench/ping-pong.mjs devstreams --connect    (through `devstreams connect` over its stdin and
//                                                     stdout, as ssh's ProxyCommand runs it)
// 2,000 round trips warm up, then each round prints: RTT p50 and p99 (us), CPU us per round trip of
// each process. DEVSTREAMS_CLI=/path/to/devstreams.mjs measures another build (bench/README.md).
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpuNs } from './lib/procs.mjs';
import { CLI, startDevstreams, startMinimal, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { pct } from './lib/stats.mjs';
import { option } from './lib/args.mjs';

const which = process.argv[2] ?? 'devstreams';
const pings = Number(option('--pings', '20000'));
const rounds = Number(option('--rounds', '2'));
const nodeArgs = option('--node-args', '').split(' ').filter(Boolean);
const viaConnect = process.argv.includes('--connect');
if (viaConnect && which !== 'devstreams') throw new Error('--connect measures devstreams connect: use it with devstreams');
const names = which.startsWith('minimal') ? ['service', 'relay', 'agent'] : [viaConnect ? 'connect' : 'forward', 'hub', 'agent'];
const target = await startTarget();
const path = which.startsWith('minimal') ? await startMinimal(target.port, { nodeArgs, mux: which === 'minimal-mux' }) : await startDevstreams(target.port, { nodeArgs });
let child;
try {
  let pids = path.pids;
  let pingPong = (count) => load.pingPong(path.port, count, 120);
  if (viaConnect) {
    // One `devstreams connect` process, its stdin and stdout the stream to the target (an echo).
    child = spawn(process.execPath, [...nodeArgs, CLI, 'connect', 'bench', 'target'], { env: { ...process.env, ...path.env }, stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.write('E');
    pids = [child.pid, ...path.pids.slice(1)];
    pingPong = async (count) => {
      const one = Buffer.from('x');
      const times = [];
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        child.stdin.write(one);
        await once(child.stdout, 'data');
        times.push((performance.now() - t0) * 1000);
      }
      return times;
    };
  }
  await pingPong(2000);
  for (let r = 0; r < rounds; r++) {
    const c0 = pids.map(cpuNs);
    const rtts = await pingPong(pings);
    const c1 = pids.map(cpuNs);
    const perRt = names.map((n, k) => `${n} ${((c1[k] - c0[k]) / 1e3 / rtts.length).toFixed(0)}`).join(', ');
    console.log(`${which}${viaConnect ? ' connect' : ''} ping-pong ${rtts.length}: RTT p50 ${pct(rtts, 0.5).toFixed(0)} us, p99 ${pct(rtts, 0.99).toFixed(0)} us; CPU us per round trip ${perRt}`);
  }
} finally {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.stdin.end(); // EOF: the stream ends cleanly and connect exits
    await exited;
  }
  await path.stop();
  await target.proc.stop();
}
