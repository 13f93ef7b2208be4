// Where one process's garbage comes from while it carries one stream: V8's sampling heap profiler,
// counting the objects the collector has already freed too (what --heap-prof leaves out), by the
// function that allocated them. For finding what makes a process collect more than the floor's.
//   node bench/alloc-profile.mjs devstreams|minimal-mux ROLE [--dir up|down] [--mib 256] [--top 25]
//     ROLE: forward|hub|agent for devstreams, service|relay|agent for minimal-mux
// The process gets its inspector through SIGUSR1 once it runs (on 127.0.0.1:9229: nothing else may
// hold that port), so it starts exactly as in the other benchmarks. Prints MB allocated per GiB
// carried, in all and for the top allocating functions (self), and the process's CPU ns/B.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { WebSocket } from 'ws';
import { cpuNs } from './lib/procs.mjs';
import { startDevstreams, startMinimal, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { MiB } from './lib/stats.mjs';
import { option } from './lib/args.mjs';

const which = process.argv[2] ?? 'devstreams';
const role = process.argv[3] ?? 'agent';
const dir = option('--dir', 'up');
const mib = Number(option('--mib', '256'));
const top = Number(option('--top', '25'));
const names = which.startsWith('minimal') ? ['service', 'relay', 'agent'] : ['forward', 'hub', 'agent'];
const k = names.indexOf(role);
if (k < 0) throw new Error(`role must be one of ${names.join(', ')}`);

const target = await startTarget();
const path = which.startsWith('minimal') ? await startMinimal(target.port, { mux: which === 'minimal-mux' }) : await startDevstreams(target.port);
try {
  await load.download(path.port, 16 * MiB); // warm-up
  const pid = path.pids[k];
  process.kill(pid, 'SIGUSR1');
  const inspector = await attach();
  await inspector.call('HeapProfiler.enable');
  await inspector.call('HeapProfiler.startSampling', {
    samplingInterval: 16 * 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const c0 = cpuNs(pid);
  const x = dir === 'up' ? await load.upload(path.port, mib * MiB) : await load.download(path.port, mib * MiB);
  const c1 = cpuNs(pid);
  const { profile } = await inspector.call('HeapProfiler.stopSampling');
  inspector.close();
  const self = new Map();
  let total = 0;
  const walk = (n) => {
    const { functionName, url, lineNumber } = n.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const perGiB = (b) => ((b / x.bytes) * 1024).toFixed(1); // MB allocated per GiB carried (both as bytes)
  console.log(`${which} ${role}, 1 stream ${dir}: ${(x.bytes / 1e6 / x.secs).toFixed(0)} MB/s; ${role} ${((c1 - c0) / x.bytes).toFixed(2)} ns/B; allocated ${perGiB(total)} MiB per GiB carried`);
  for (const [key, bytes] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${perGiB(bytes).padStart(8)}  ${key}`);
} finally {
  await path.stop();
  await target.proc.stop();
}

/** The process's inspector (opened by SIGUSR1 on 127.0.0.1:9229), as `call(method, params)`. */
async function attach() {
  let list;
  for (let i = 0; i < 50 && !list; i++) {
    list = await fetch('http://127.0.0.1:9229/json/list').then((r) => r.json(), () => null);
    if (!list) await new Promise((r) => setTimeout(r, 100));
  }
  if (!list?.length) throw new Error('no inspector on 127.0.0.1:9229');
  const ws = new WebSocket(list[0].webSocketDebuggerUrl, { perMessageDeflate: false, maxPayload: 1024 ** 3 });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  let next = 1;
  const pending = new Map();
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Error(`${m.error.message}`));
    else p.resolve(m.result);
  });
  return {
    call: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}
