// Tunnels measured as if each party ran on a computer of its own: the user's computer (the load
// generator, which is this process, and the service side: `forward`, `ssh`), the hub, and the
// device (the device side: the agent, `sshd` with its session processes; and the target service),
// each a CPU quota group (bench/lib/cpu-quota.mjs). On a shared 2-core host a tunnel's throughput
// follows the sum of its processes' CPU per byte; here it follows the busiest computer's, as in a
// deployment. bench/README.md says what this leaves out.
import { CpuQuotaGroups } from './cpu-quota.mjs';
import { cpuNs } from './procs.mjs';
import * as load from './load.mjs';
import { MiB, summary } from './stats.mjs';

export const COMPUTERS = ['user', 'hub', 'device'];

/**
 * Each computer's share of a core, from `0.5` (all three alike) or `user=0.6,hub=0.6,device=0.3`
 * (each named; all three needed). Throws with what is wrong.
 */
export function parseShares(text) {
  const bad = (why) => new Error(`--share ${JSON.stringify(text)}: ${why}`);
  const num = (s) => {
    const v = Number(s);
    if (!(v > 0 && v <= 64) || s.trim() === '') throw bad(`${JSON.stringify(s)} is not a share of a core (a number above 0)`);
    return v;
  };
  if (!text.includes('=')) return Object.fromEntries(COMPUTERS.map((c) => [c, num(text)]));
  const out = {};
  for (const part of text.split(',')) {
    const [name, value, ...rest] = part.split('=');
    if (!COMPUTERS.includes(name) || rest.length) throw bad(`${JSON.stringify(part)}: expected one of ${COMPUTERS.map((c) => `${c}=N`).join(', ')}`);
    if (name in out) throw bad(`${name} given twice`);
    out[name] = num(value ?? '');
  }
  const missing = COMPUTERS.filter((c) => !(c in out));
  if (missing.length) throw bad(`no share for ${missing.join(', ')}`);
  return out;
}

/**
 * Where a path's processes go: its first (the service side) on the user's computer, its last (the
 * device side) on the device, any between on the hub. `ssh -L` has no hub.
 */
export function computersOf(pids, parties = pids.map(String)) {
  const at = (i) => ({ pid: pids[i], party: parties[i] });
  const n = pids.length;
  return [
    { name: 'user', procs: [at(0)] },
    ...(n > 2 ? [{ name: 'hub', procs: pids.slice(1, -1).map((_, i) => at(i + 1)) }] : []),
    { name: 'device', procs: [at(n - 1)] },
  ];
}

/**
 * One stream up and down (`streams` at once, each) on every path in `paths`, `runs` times (the
 * paths' order alternating by run), with the computers held to `shares` of a core. Returns, per
 * path and transfer, MB/s and per computer its CPU as a fraction of its share, the fraction of
 * quota periods in which it was held back, and its CPU ns per byte. Each path first carries
 * `warmUp` bytes each way. The groups go when it returns.
 */
export async function onComputers(paths, targetPid, { shares, periodUs = 10_000, bytes = 512 * MiB, warmUp = 128 * MiB, maxS = 20, runs = 3, streams = [1], log = () => {} }) {
  const quota = new CpuQuotaGroups({ periodUs });
  quota.removeStale();
  try {
    const groups = Object.fromEntries(COMPUTERS.map((c) => [c, quota.create(c, shares[c])]));
    groups.user.add(process.pid);
    groups.device.add(targetPid);
    const placed = new Map();
    for (const p of paths) {
      const cs = computersOf(p.pids, p.parties).map((c) => ({ ...c, group: groups[c.name], share: shares[c.name] }));
      for (const c of cs) for (const { pid } of c.procs) c.group.add(pid); // with descendants: sshd's session processes
      cs.find((c) => c.name === 'user').procs.push({ pid: process.pid, party: 'load' });
      cs.find((c) => c.name === 'device').procs.push({ pid: targetPid, party: 'target' });
      placed.set(p, cs);
    }
    // Warm-up, under the quota, both ways: a fresh process's first transfer grows its heap, and
    // costs the hub and the agent a third more per byte than the next (bench/HISTORY.md).
    for (const p of paths) for (const dir of ['up', 'down']) await transfer(p.port, 1, dir, warmUp, maxS);
    const raw = {};
    for (let r = 0; r < runs; r++) {
      // Which path goes first alternates by run, so that a drift of the host falls on each alike.
      const order = r % 2 === 0 ? paths : [...paths].reverse();
      for (const n of streams) {
        for (const dir of ['up', 'down']) {
          for (const p of order) {
            const x = await measure(p, placed.get(p), () => transfer(p.port, n, dir, bytes, maxS));
            ((raw[p.name] ??= {})[`${dir}${n}`] ??= []).push(x);
            log(`computers run ${r + 1}/${runs} ${p.name} ${n} stream(s) ${dir}: ${x.mbps.toFixed(0)} MB/s; ${Object.keys(x.load).map((c) => `${c} ${(x.load[c] * 100).toFixed(0)} % of its share`).join(', ')}`);
          }
        }
      }
    }
    return { shares, periodUs, runs, bytes, maxS, paths: summarize(raw) };
  } finally {
    quota.stop();
  }
}

function transfer(port, n, dir, bytes, maxS) {
  if (n > 1) return load.parallel(port, n, dir, bytes / n, maxS);
  return dir === 'up' ? load.upload(port, bytes, maxS) : load.download(port, bytes, maxS);
}

async function measure(p, cs, fn) {
  // Each process's CPU, computer by computer; this process's own through cpuUsage (cpuNs would add every child it started).
  const cpu = () => cs.map((c) => c.procs.map(({ pid }) => (pid === process.pid ? ownCpuNs() : cpuNs(pid))));
  const th0 = cs.map((c) => c.group.throttling());
  const c0 = cpu();
  const x = await fn();
  const c1 = cpu();
  const th1 = cs.map((c) => c.group.throttling());
  const used = cs.map((c, k) => c.procs.map((_, i) => c1[k][i] - c0[k][i]));
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const byName = (f) => Object.fromEntries(cs.map((c, k) => [c.name, f(k)]));
  return {
    mbps: x.bytes / 1e6 / x.secs,
    bytes: x.bytes,
    load: byName((k) => sum(used[k]) / (x.secs * 1e9) / cs[k].share),
    held: byName((k) => (th1[k].throttled - th0[k].throttled) / Math.max(1, th1[k].periods - th0[k].periods)),
    nsPerByte: byName((k) => sum(used[k]) / x.bytes),
    partyNsPerByte: Object.fromEntries(cs.flatMap((c, k) => c.procs.map(({ party }, i) => [party, used[k][i] / x.bytes]))),
  };
}

/** This process's own CPU time, in ns. */
function ownCpuNs() {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1e3;
}

/** Per path and transfer: MB/s as a summary of the runs, and each computer's figures as medians. */
function summarize(raw) {
  const out = {};
  for (const [name, byKey] of Object.entries(raw)) {
    out[name] = {};
    for (const [key, xs] of Object.entries(byKey)) {
      const med = (f) => Object.fromEntries(Object.keys(f(xs[0])).map((c) => [c, summary(xs.map((x) => f(x)[c])).median]));
      out[name][key] = {
        mbps: summary(xs.map((x) => x.mbps)),
        load: med((x) => x.load),
        held: med((x) => x.held),
        nsPerByte: med((x) => x.nsPerByte),
        partyNsPerByte: med((x) => x.partyNsPerByte),
      };
    }
  }
  return out;
}
