// `npm run bench`: devstreams against direct TCP, `ssh -L` and a socat chain, in the same run.
// Every tunnel runs as real processes on loopback; the load generator is this process and the
// target service is bench/target-server.mjs. Writes bench/results.json and bench/results.md.
//
//   node bench/run.mjs [--quick] [--paths direct,devstreams,minimal-mux,minimal,ssh,socat] [--no-write] [--cpu-prof DIR] [--no-exe]
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { binaryName } from '../scripts/binary-config.mjs';
import { staleAgainst } from './lib/exe-fresh.mjs';
import { cpuNs, rss } from './lib/procs.mjs';
import { ROOT, direct, startDevstreams, startMinimal, startSocat, startSsh, startTarget } from './lib/stack.mjs';
import * as load from './lib/load.mjs';
import { MB, MiB, busiest, pct, summary } from './lib/stats.mjs';
import { markdown, targets } from './lib/report.mjs';
import { wanBulk, wanSetup } from './lib/wan.mjs';
import { noAesBulk } from './lib/no-aes.mjs';
import { onComputers, parseShares } from './lib/computers.mjs';
import { findCpuController } from './lib/cpu-quota.mjs';

const argv = process.argv.slice(2);
const flag = (f) => argv.includes(f);
const opt = (f) => (argv.includes(f) ? argv[argv.indexOf(f) + 1] : undefined);
const quick = flag('--quick');
const C = quick
  ? { runs: 1, oneBytes: 128 * MiB, eightEach: 16 * MiB, pings: 2000, setups: 200, wanSetups: 10, rateTotal: 300, rateMaxS: 4, xferMaxS: 5, pingMaxS: 5, setupMaxS: 10, inflight: 50, concurrent: 200, checkBytes: 4096, idleS: 10 }
  : { runs: 3, oneBytes: 1024 * MiB, eightEach: 128 * MiB, pings: 10_000, setups: 1000, wanSetups: 40, rateTotal: 1000, rateMaxS: 8, xferMaxS: 15, pingMaxS: 15, setupMaxS: 40, inflight: 50, concurrent: 1000, checkBytes: 4096, idleS: 60 };
const wanted = (opt('--paths') ?? 'direct,devstreams,minimal-mux,minimal,ssh,socat').split(',');
const profDir = opt('--cpu-prof');
const haveSsh = existsSync('/usr/sbin/sshd') && existsSync('/usr/bin/ssh');
const haveSocat = (() => {
  try {
    execFileSync('socat', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const started = Date.now();
const load0 = loadavg();

// The agent as devices run it: the single executable for this machine, started cold (its file out
// of the page cache, as after a boot: bench/lib/cold-start.mjs), idle: fresh, and after the work of
// `bench/idle.mjs --load` (256 MiB each way, then 1,000 concurrent streams). Built here when missing
// or older than the sources (about 6 s); --no-exe skips both.
const idleExe = flag('--no-exe') || !wanted.includes('devstreams') ? null : measureIdleExe();
const idleExeAfterWork = idleExe ? measureIdleExe({ afterWork: true }) : null;

const target = await startTarget();
const paths = [];
const results = {};
try {
  if (wanted.includes('direct')) paths.push(direct(target.port));
  if (wanted.includes('devstreams')) paths.push(await startDevstreams(target.port, profDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] } : {}));
  // The floors: minimal-mux (one connection per side, as devstreams now carries its streams) and
  // minimal (a connection per stream, as devstreams did before docs/MULTIPLEXING.md).
  if (wanted.includes('minimal-mux')) paths.push(await startMinimal(target.port, { mux: true }));
  if (wanted.includes('minimal')) paths.push(await startMinimal(target.port));
  if (wanted.includes('ssh')) haveSsh ? paths.push(await startSsh(target.port)) : log('no sshd/ssh: the ssh -L baseline is skipped');
  if (wanted.includes('socat')) haveSocat ? paths.push(await startSocat(target.port)) : log('no socat: the socat baseline is skipped');
  for (const p of paths) results[p.name] = { raw: { up1: [], down1: [], up8: [], down8: [], nsUp1: [], nsDown1: [], nsUp8: [], nsDown8: [], deviceNsUp1: [], deviceNsDown1: [], busiestUp1: [], busiestDown1: [], rtt50: [], rtt99: [], pings: [], rate: [], setupCpuMs: [], bytes: [] }, errors: [] };

  /**
   * Runs `fn` and returns [its result, CPU ns the tunnel's processes used meanwhile, CPU ns of its
   * device side's process, CPU ns of each of its processes (in the order of `p.pids`)].
   */
  const withCpu = async (p, fn) => {
    const c0 = p.pids.map(cpuNs);
    const d0 = p.devicePid ? cpuNs(p.devicePid) : 0;
    const r = await fn();
    const each = p.pids.map((pid, i) => cpuNs(pid) - c0[i]);
    return [r, each.reduce((a, n) => a + n, 0), p.devicePid ? cpuNs(p.devicePid) - d0 : NaN, each];
  };

  // The agent idle while fresh: online, never carried a stream (the figure after all the load is
  // measured at the end).
  const dsFresh = paths.find((p) => p.name === 'devstreams');
  if (dsFresh) {
    log(`devstreams: fresh agent idle for ${C.idleS} s`);
    await new Promise((r) => setTimeout(r, 5000)); // settle after start
    const c0 = cpuNs(dsFresh.agent.pid);
    const rss0 = rss(dsFresh.agent.pid);
    await new Promise((r) => setTimeout(r, C.idleS * 1000));
    results.devstreams.idleFresh = { seconds: C.idleS, rssStart: rss0, rssEnd: rss(dsFresh.agent.pid), cpuPercent: (100 * (cpuNs(dsFresh.agent.pid) - c0)) / (C.idleS * 1e9) };
  }

  // Each figure is measured on every path back to back, devstreams and ssh -L next to each other
  // (which of the two goes first alternates by run), so that the two a ratio compares are measured
  // seconds apart, not minutes: this machine's speed drifts by more than most changes between
  // them. Ratios are then taken run by run (bench/lib/report.mjs).
  const adjacent = ['devstreams', 'ssh -L'];
  const order = (run) => {
    const pair = paths.filter((p) => adjacent.includes(p.name));
    if (run % 2 === 0) pair.reverse();
    return [...pair, ...paths.filter((p) => !adjacent.includes(p.name))];
  };
  const transfers = [
    ['up1', 'nsUp1', 'deviceNsUp1', 'busiestUp1', (p) => load.upload(p.port, C.oneBytes, C.xferMaxS)],
    ['down1', 'nsDown1', 'deviceNsDown1', 'busiestDown1', (p) => load.download(p.port, C.oneBytes, C.xferMaxS)],
    ['up8', 'nsUp8', null, null, (p) => load.parallel(p.port, 8, 'up', C.eightEach, C.xferMaxS)],
    ['down8', 'nsDown8', null, null, (p) => load.parallel(p.port, 8, 'down', C.eightEach, C.xferMaxS)],
  ];
  for (let run = 1; run <= C.runs; run++) {
    const ps = order(run);
    log(`run ${run}/${C.runs}: throughput (${ps.map((p) => p.name).join(', ')})`);
    for (const [rate, cpu, deviceCpu, busiestCpu, fn] of transfers) {
      for (const p of ps) {
        const r = results[p.name].raw;
        const [x, ns, dns, each] = await withCpu(p, () => fn(p));
        r[rate].push(x.bytes / MB / x.secs), r[cpu].push(ns / x.bytes), r.bytes.push(x.bytes);
        if (deviceCpu) r[deviceCpu].push(dns / x.bytes);
        if (busiestCpu && p.parties) r[busiestCpu].push(busiest(each, p.parties, x.bytes));
      }
    }
    log(`run ${run}/${C.runs}: ping-pong x${C.pings}`);
    for (const p of ps) {
      const r = results[p.name].raw;
      const rtt = await load.pingPong(p.port, C.pings, C.pingMaxS);
      r.rtt50.push(pct(rtt, 0.5)), r.rtt99.push(pct(rtt, 0.99)), r.pings.push(rtt.length);
    }
    log(`run ${run}/${C.runs}: set-up rate, ${C.inflight} in flight`);
    for (const p of ps) {
      const r = results[p.name].raw;
      const [rate, setupNs] = await withCpu(p, () => load.setupRate(p.port, C.rateTotal, C.inflight, C.rateMaxS));
      r.rate.push(rate.rate), r.setupCpuMs.push(setupNs / 1e6 / rate.started);
      results[p.name].errors.push(...rate.errors.map((e) => `set-up rate: ${e}`));
    }
  }
  for (const p of paths) {
    if (p.name === 'direct') continue;
    log(`${p.name}: set-up time x${C.setups}`);
    const st = await load.setupTimes(p.port, C.setups, C.setupMaxS);
    results[p.name].setup = { p50: pct(st.times, 0.5), p99: pct(st.times, 0.99), n: st.times.length };
    results[p.name].errors.push(...st.errors.map((e) => `set-up: ${e}`));
  }
  const ds = paths.find((p) => p.name === 'devstreams');
  const sshPath = paths.find((p) => p.name === 'ssh -L');
  // As on three computers: each party held to half a core (bench/lib/computers.mjs), 1.5 of this
  // host's 2 cores for devstreams' three. Needs root for the cgroups.
  if (ds && findCpuController()) {
    log(`devstreams${sshPath ? ' and ssh -L' : ''}: one stream up and down, each party on a computer of its own (half a core each)`);
    try {
      results.devstreams.computers = await onComputers([ds, ...(sshPath ? [sshPath] : [])], target.proc.pid, {
        shares: parseShares('0.5'), bytes: C.oneBytes / 2, maxS: C.xferMaxS, runs: C.runs,
      });
    } catch (err) {
      log(`the figure with a computer per party failed, and is left out: ${err.message}`); // the rest of the run stands
    }
  } else if (ds) log('no writable cgroup cpu controller (not root?): the figure with a computer per party is skipped');
  if (ds) {
    // On a hub, agent and forward of their own, started for it: after the transfers above, the
    // worked processes hold memory the streams then reuse, and "memory per open stream" would
    // measure that history instead of what a stream costs (12 KB per stream in one such run).
    log(`devstreams: ${C.concurrent} concurrent streams (fresh hub, agent and forward)`);
    const cs = await startDevstreams(target.port);
    try {
      const m = await load.openAtOnce(cs, C.concurrent, C.checkBytes);
      const byName = ([forward, hub, agent]) => ({ agent, hub, forward }); // in the order of cs.pids
      const [failed, before, peak] = [m.failed, byName(m.before), byName(m.peak)];
      // Why streams failed, from the three processes' warning and error lines.
      const why = {};
      for (const [who, proc] of [['forward', cs.forward], ['hub', cs.hub], ['agent', cs.agent]]) {
        for (const l of proc.lines) {
          if (!/"level":(40|50)/.test(l)) continue;
          const j = JSON.parse(l);
          const k = `${who}: ${j.msg}${j.err ? `: ${j.err}` : j.reason ? `: ${j.reason}` : ''}`.slice(0, 160);
          why[k] = (why[k] ?? 0) + 1;
        }
      }
      results.devstreams.concurrency = { streams: C.concurrent, bytesEach: C.checkBytes, failed, before, peak, warnings: why, freshStack: true };
    } finally {
      await cs.stop();
    }
    log(`devstreams: agent idle for ${C.idleS} s`);
    await new Promise((r) => setTimeout(r, 3000)); // let the last streams' sockets close
    const c0 = cpuNs(ds.agent.pid);
    const rss0 = rss(ds.agent.pid);
    await new Promise((r) => setTimeout(r, C.idleS * 1000));
    const cpu = cpuNs(ds.agent.pid) - c0;
    results.devstreams.idle = { seconds: C.idleS, rssStart: rss0, rssEnd: rss(ds.agent.pid), cpuPercent: (100 * cpu) / (C.idleS * 1e9) };
    log(`devstreams: set-up with a 50 ms round trip to the hub x${C.wanSetups}`);
    const wan = await wanSetup(target.port, { rttMs: 50, streams: C.wanSetups });
    results.devstreams.wanSetup = { rttMs: wan.rttMs, p50: wan.p50, p90: wan.p90, n: wan.n };
    results.devstreams.errors.push(...wan.errors.map((e) => `set-up over 50 ms: ${e}`));
    log(`devstreams${haveSsh ? ' and ssh -L' : ''}: one stream up and down with a 50 ms round trip`);
    results.devstreams.wanBulk = await wanBulk(target.port, { rttMs: 50, bytes: C.oneBytes / 4, maxS: C.xferMaxS / 2, ssh: haveSsh });
    if (process.arch === 'x64') {
      log(`devstreams${haveSsh ? ' and ssh -L' : ''}: one stream, the device side without AES-NI (a Raspberry Pi 3 or 4 stand-in)`);
      results.devstreams.noAes = await noAesBulk(target.port, { bytes: C.oneBytes / 4, maxS: C.xferMaxS / 2, runs: C.runs, ssh: haveSsh });
    }
  }
} finally {
  for (const p of paths) await p.stop().catch((e) => log(`stopping ${p.name}: ${e.message}`));
  await target.proc.stop();
}

for (const [name, res] of Object.entries(results)) {
  const r = res.raw;
  res.throughput = { up1: summary(r.up1), down1: summary(r.down1), up8: summary(r.up8), down8: summary(r.down8) };
  res.cpuNsPerByte = name === 'direct' ? null : { up1: summary(r.nsUp1), down1: summary(r.nsDown1), up8: summary(r.nsUp8), down8: summary(r.nsDown8) };
  // The device side's process alone (devstreams' agent, ssh -L's sshd): what a device spends per byte.
  res.deviceCpuNsPerByte = name === 'direct' ? null : { up1: summary(r.deviceNsUp1), down1: summary(r.deviceNsDown1) };
  // The busiest process of each one-stream transfer: what caps a stream with each on a core of its own.
  const busiestOf = (xs) => ({ ...summary(xs.map((b) => b.ns)), names: xs.map((b) => b.name) });
  res.busiestCpuNsPerByte = r.busiestUp1.length ? { up1: busiestOf(r.busiestUp1), down1: busiestOf(r.busiestDown1) } : null;
  res.rttUs = { p50: summary(r.rtt50), p99: summary(r.rtt99), pings: r.pings };
  res.bytesPerTransfer = { min: Math.min(...r.bytes), max: Math.max(...r.bytes) };
  res.setupRate = summary(r.rate);
  res.setupCpuMs = name === 'direct' ? null : summary(r.setupCpuMs);
  delete res.raw;
}
const cpu = cpus();
const out = {
  date: new Date().toISOString(),
  quick,
  durationS: Math.round((Date.now() - started) / 1000),
  machine: { cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: release(), loadavgBefore: load0, loadavgAfter: loadavg() },
  config: C,
  results,
};
if (idleExe && results.devstreams) results.devstreams.idleExe = idleExe;
if (idleExeAfterWork && results.devstreams) results.devstreams.idleExeAfterWork = idleExeAfterWork;
out.targets = targets(out);
const md = markdown(out);
if (!flag('--no-write')) {
  writeFileSync(new URL('results.json', import.meta.url), JSON.stringify(out, null, 2) + '\n');
  writeFileSync(new URL('results.md', import.meta.url), md);
  log(`wrote bench/results.json and bench/results.md (${out.durationS} s)`);
}
console.log(md);
void ROOT;

/**
 * `node bench/idle.mjs --exe EXE --cold` on this machine's executable (built if missing or stale),
 * with `--load` when `afterWork`; null if it cannot be had.
 */
function measureIdleExe({ afterWork = false } = {}) {
  const exe = join(ROOT, 'dist/bin', binaryName(process.arch));
  if (!existsSync(exe) || staleAgainst(exe)) {
    log(`building ${exe} (npm run build:binary -- ${process.arch})`);
    const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build-binary.mjs'), process.arch], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (b.status !== 0) {
      log('the executable could not be built: its idle figure is skipped');
      return null;
    }
  }
  log(`devstreams: the agent as the single executable, started cold, ${afterWork ? 'after 256 MiB each way and 1,000 streams, ' : ''}idle for ${C.idleS} s`);
  // After work: from 20 s on, so that the minute holds the idle reclaimer's second pass, 10 s after
  // the multiplexed connection closes a minute after the last stream (protocol/idle-memory.ts).
  const args = [join(ROOT, 'bench/idle.mjs'), '--exe', exe, '--cold', '--seconds', String(C.idleS), ...(afterWork ? ['--load', '--settle', '20'] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const line = r.stdout.trim().split('\n').pop();
  try {
    const j = JSON.parse(line);
    return { exe: `dist/bin/${binaryName(process.arch)}`, cold: true, afterWork, seconds: j.seconds, rssStart: j.rssStartMB * 1e6, rssEnd: j.rssEndMB * 1e6, anon: j.rssAnonMB * 1e6, file: j.rssFileMB * 1e6, peak: j.peakMB * 1e6, cpuPercent: j.cpuPercent };
  } catch {
    log(`bench/idle.mjs --exe gave no figure (exit ${r.status}): its idle figure is skipped`);
    return null;
  }
}
