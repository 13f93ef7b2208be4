// What reading at the edge of the tunnel costs (issue 6, twenty-sixth round): one process downloads
// from the benchmark's target server (bench/target-server.mjs) over loopback through
// protocol/tcp-read-buffer.ts (the `onread` of the agent's target sockets and `devstreams forward`'s
// client sockets) and does nothing else with the bytes; it prints that process's CPU per byte, user
// and system. Several source trees (git worktrees) run in turn, each run a fresh process, and the
// medians are printed per tree: user CPU is what the read path costs, system CPU is the kernel's
// copy and this host's noise.
//   node bench/edge-read.mjs [--roots /tmp/base,.] [--gib 2] [--runs 5]
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, startTarget } from './lib/stack.mjs';
import { header } from './lib/load.mjs';
import { option } from './lib/args.mjs';
import { pct } from './lib/stats.mjs';

const self = fileURLToPath(import.meta.url);
/**
 * glibc's heap thresholds as a process carrying streams sets them (protocol/malloc-trim.ts
 * RELAY_HEAP_THRESHOLDS), through the environment: with glibc's own, freed read buffers go back to
 * the kernel and fault in again, and the kernel's time is mostly that.
 */
const HEAP = { MALLOC_TRIM_THRESHOLD_: String(256 * 2 ** 20), MALLOC_MMAP_THRESHOLD_: String(32 * 2 ** 20) };
const role = process.argv[2];

if (role === '--reader') {
  // One run: downloads `bytes` from the target server through the module's sharedReadBuffer;
  // prints ns/B as JSON.
  const { sharedReadBuffer } = await import(process.argv[3]);
  const port = Number(process.argv[4]);
  const bytes = Number(process.argv[5]);
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true, onread: sharedReadBuffer(() => socket) });
  await once(socket, 'connect');
  socket.write(header('D', bytes));
  let got = 0;
  const c0 = process.cpuUsage();
  const f0 = process.resourceUsage().minorPageFault;
  const t0 = performance.now();
  socket.on('data', (d) => (got += d.length));
  await once(socket, 'end');
  const c = process.cpuUsage(c0);
  const faults = process.resourceUsage().minorPageFault - f0;
  const ms = performance.now() - t0;
  if (got !== bytes) throw new Error(`read ${got} bytes of ${bytes}`);
  console.log(JSON.stringify({ mbps: got / ms / 1e3, user: (c.user * 1e3) / got, system: (c.system * 1e3) / got, faultsPerMiB: (faults * 2 ** 20) / got }));
} else {
  const roots = option('--roots', ROOT).split(',').map((r) => resolve(r));
  const bytes = Math.round(Number(option('--gib', '2')) * 2 ** 30);
  const runs = Number(option('--runs', '5'));
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-edge-'));
  const target = await startTarget();
  try {
    const { build } = await import('esbuild');
    const modules = [];
    for (const [i, root] of roots.entries()) {
      const outfile = join(dir, `edge-${i}.mjs`);
      await build({ entryPoints: [join(root, 'protocol/tcp-read-buffer.ts')], bundle: true, platform: 'node', format: 'esm', outfile, logLevel: 'error' });
      modules.push(outfile);
    }
    const results = roots.map(() => []);
    for (let r = 0; r < runs; r++) {
      // Alternating order, so that no tree always runs first in a round while the host drifts.
      const order = r % 2 === 0 ? roots.map((_, i) => i) : roots.map((_, i) => roots.length - 1 - i);
      for (const i of order) {
        const child = spawn(process.execPath, [self, '--reader', modules[i], String(target.port), String(bytes)], { env: { ...process.env, ...HEAP }, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (c) => (out += c));
        const [code] = await once(child, 'exit');
        if (code !== 0) throw new Error(`reader for ${roots[i]} exited with ${code}`);
        results[i].push(JSON.parse(out));
      }
    }
    const med = (xs, k) => pct(xs.map((x) => x[k]), 0.5);
    console.log(`${runs} runs of ${(bytes / 2 ** 20).toFixed(0)} MiB each, medians (min-max of user CPU):`);
    for (const [i, root] of roots.entries()) {
      const users = results[i].map((x) => x.user);
      console.log(
        `${root}: ${med(results[i], 'mbps').toFixed(0)} MB/s, reader CPU user ${med(results[i], 'user').toFixed(3)} ns/B ` +
          `(${Math.min(...users).toFixed(3)}-${Math.max(...users).toFixed(3)}), system ${med(results[i], 'system').toFixed(3)} ns/B, ` +
          `${med(results[i], 'faultsPerMiB').toFixed(1)} page faults per MiB`,
      );
    }
  } finally {
    await target.proc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
