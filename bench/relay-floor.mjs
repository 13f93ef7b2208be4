// What relaying costs Node itself on this machine, before any TLS or framing: a chain of plain Node
// TCP relays (bench/lib/node-relay.mjs: accept, dial, pipe) in front of the target, and a 1-byte
// ping-pong through it. Devstreams' interactive path crosses three Node processes (forward, hub,
// agent), each handling two messages per round trip; this is the floor of that shape.
//   node bench/relay-floor.mjs [--relays 3] [--pings 10000]
// Prints RTT p50/p99 direct and through the chain, what the chain adds, and the CPU us per round
// trip of each relay.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { join } from 'node:path';
import { Proc, cpuNs } from './lib/procs.mjs';
import { ROOT, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { pct } from './lib/stats.mjs';
import { option } from './lib/args.mjs';

const relays = Number(option('--relays', '3'));
const pings = Number(option('--pings', '10000'));
const target = await startTarget();
const chain = [];
try {
  let port = target.port;
  for (let i = 0; i < relays; i++) {
    const p = new Proc(process.execPath, [join(ROOT, 'bench/lib/node-relay.mjs'), String(port)], { name: `relay-${i}` });
    chain.push(p);
    port = Number((await p.waitFor((l) => l.startsWith('listening '))).split(' ')[1]);
  }
  const direct = await load.pingPong(target.port, pings, 30);
  const c0 = chain.map((p) => cpuNs(p.pid));
  const through = await load.pingPong(port, pings, 30);
  const c1 = chain.map((p) => cpuNs(p.pid));
  const us = (a, q) => pct(a, q).toFixed(0);
  console.log(`direct: RTT p50 ${us(direct, 0.5)} us, p99 ${us(direct, 0.99)} us`);
  console.log(
    `${relays} plain Node relays: RTT p50 ${us(through, 0.5)} us, p99 ${us(through, 0.99)} us; adds p50 ${(pct(through, 0.5) - pct(direct, 0.5)).toFixed(0)} us; ` +
      `CPU us per round trip ${chain.map((p, k) => ((c1[k] - c0[k]) / 1e3 / through.length).toFixed(0)).join(', ')}`,
  );
} finally {
  for (const p of chain.reverse()) await p.stop();
  await target.proc.stop();
}
