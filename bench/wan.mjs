// Stream set-up with a far-away hub: loopback hides what a round trip costs, this shows it.
// The hub is reached only through bench/lib/delay-proxy.mjs (this machine has no netem).
//   node bench/wan.mjs [--rtt 50] [--streams 40] [--connect [--exe dist/bin/devstreams-linux-x64] | --bulk]
// Prints the set-up time (connect to `devstreams forward` to the first byte echoed back by the
// target) p50 and p90, in ms and in round trips. With --bulk, one stream's MB/s up and down (up to
// 256 MiB or 8 s each) through devstreams and through ssh -L over the same link. With --connect, the set-up of `devstreams
// connect`, a process per stream (ssh's ProxyCommand): spawn to first byte, at --rtt and direct.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { startTarget } from './lib/stack.mjs';
import { wanBulk, wanConnectSetup, wanSetup } from './lib/wan.mjs';
import { warnIfStale } from './lib/exe-fresh.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const target = await startTarget();
try {
  if (process.argv.includes('--bulk')) {
    const w = await wanBulk(target.port, { rttMs: arg('--rtt', 50) });
    const mb = (x) => `${x.up.toFixed(1)} up / ${x.down.toFixed(1)} down MB/s`;
    console.log(`one stream with a ${w.rttMs} ms round trip: devstreams ${mb(w.devstreams)}; ssh -L ${w.ssh ? mb(w.ssh) : 'skipped'}`);
  } else if (process.argv.includes('--connect')) {
    const e = process.argv.indexOf('--exe');
    warnIfStale(e > 0 ? process.argv[e + 1] : undefined);
    const w = await wanConnectSetup(target.port, { rttMs: arg('--rtt', 50), streams: arg('--streams', 10), exe: e > 0 ? process.argv[e + 1] : undefined });
    console.log(
      `devstreams connect, ${w.n} processes: spawn to first byte p50 ${w.p50.toFixed(0)} ms with a ${w.rttMs} ms round trip to the hub, ` +
        `${w.p50Near.toFixed(0)} ms direct: the link costs ${(w.p50 - w.p50Near).toFixed(0)} ms (${w.roundTrips.toFixed(1)} round trips)`,
    );
  } else {
    const w = await wanSetup(target.port, { rttMs: arg('--rtt', 50), streams: arg('--streams', 40) });
    console.log(
      `set-up with a ${w.rttMs} ms round trip to the hub, ${w.n} streams (${w.errors.length} failed): ` +
        `p50 ${w.p50.toFixed(0)} ms (${(w.p50 / w.rttMs).toFixed(1)} round trips), p90 ${w.p90.toFixed(0)} ms`,
    );
  }
} finally {
  await target.proc.stop();
}
