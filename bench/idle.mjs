// node bench/idle.mjs [--seconds 60] [--exe dist/bin/devstreams-linux-x64] [--cold] [--settle 5] [--node-options OPTS] [--load] [--env K=V,...] [--gc memory|throughput] [--smaps] [--rss-map] [-- NODE_ARGS...]
// The agent's idle footprint alone (issue 6, figure 6) without the rest of the bench: a real hub
// (node dist/devstreams.mjs) and one agent with its control channel up and no streams. The agent
// runs as `node dist/devstreams.mjs agent` (NODE_ARGS go to that node), or as the single
// executable given with --exe; --node-options sets NODE_OPTIONS for the agent alone. After --settle seconds online it reads VmRSS from /proc/PID/status
// and utime+stime (+ reaped children) from /proc/PID/stat, waits --seconds, and reads them again.
// With --load, the agent first carries what the bench's other figures put through it (256 MiB up
// and down on one stream, then 1,000 concurrent checked streams) and is then measured idle: the RSS
// of an agent that has worked. --env sets environment variables for the agent alone; --gc its
// runtime.gc (a 2 GiB machine or more runs throughput by default, a small board memory). --cold
// starts the agent with its program file out of the page cache, as a device does after boot (the
// executable, or a private copy of Node: bench/lib/cold-start.mjs); without it the file-backed RSS
// also counts cached pages next to the ones the agent reads. --rss-map adds the Node binary's
// resident pages by symbol group and symbol (bench/lib/rss-map.mjs).
// Prints one JSON line. Light without --load: two idle processes.
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { readFileSync } from 'node:fs';
import * as load from './lib/load.mjs';
import { cpuNs } from './lib/procs.mjs';
import { MiB } from './lib/stats.mjs';
import { startDevstreams, startTarget } from './lib/stack.mjs';
import { warnIfStale } from './lib/exe-fresh.mjs';
import { rssMap } from './lib/rss-map.mjs';

const argv = process.argv.slice(2);
const dashes = argv.indexOf('--');
const own = dashes >= 0 ? argv.slice(0, dashes) : argv;
const nodeArgs = dashes >= 0 ? argv.slice(dashes + 1) : [];
const opt = (name, def) => {
  const i = own.indexOf(name);
  return i >= 0 ? own[i + 1] : def;
};
const seconds = Number(opt('--seconds', '60'));
const settle = Number(opt('--settle', '5'));
const exe = opt('--exe');
warnIfStale(exe);
const nodeOptions = opt('--node-options');
const withLoad = own.includes('--load');
const cold = own.includes('--cold');
const agentEnv = Object.fromEntries((opt('--env') ?? '').split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

const status = (pid) => {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
};
const MB = (n) => Math.round((n / 1e6) * 10) / 10;
// --smaps: where the RSS is, by mapping (the binary's sections, the heap, anonymous), largest first.
const smaps = (pid) => {
  const by = new Map();
  let name = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) name = `${m[1]} ${m[2].replace(/^.*\//, '') || '[anon]'}`;
    else if (line.startsWith('Rss:')) by.set(name, (by.get(name) ?? 0) + Number(line.split(/\s+/)[1]) * 1024);
  }
  return Object.fromEntries([...by].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => [k, MB(v)]));
};

const target = await startTarget();
const agentGc = opt('--gc');
const ds = await startDevstreams(target.port, {
  logLevel: 'warn',
  agentGc,
  agentExe: exe,
  agentNodeArgs: nodeArgs,
  agentEnv: { ...agentEnv, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
  agentCold: cold,
});
const agent = ds.agent;
try {
  if (withLoad) {
    await load.upload(ds.port, 256 * MiB, 15);
    await load.download(ds.port, 256 * MiB, 15);
    const failed = await load.concurrent(ds.port, 1000, 4096, async () => {});
    if (failed) throw new Error(`${failed} of 1,000 concurrent streams failed`);
    await new Promise((r) => setTimeout(r, 3000)); // let the streams' sockets close
  }
  await ds.forward.stop(); // the service side is not part of this measurement
  await new Promise((r) => setTimeout(r, settle * 1000));
  const s0 = status(agent.pid);
  const c0 = cpuNs(agent.pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const c1 = cpuNs(agent.pid);
  const s1 = status(agent.pid);
  if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.lines.slice(-10).join('\n')}`);
  console.log(
    JSON.stringify({
      agent: exe ? exe : `node ${process.version} ${nodeArgs.join(' ')} dist/devstreams.mjs`.replace(/  +/g, ' '),
      cold,
      ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
      ...(Object.keys(agentEnv).length ? { env: agentEnv } : {}),
      ...(agentGc ? { gc: agentGc } : {}),
      load: withLoad,
      seconds,
      rssStartMB: MB(s0.rss),
      rssEndMB: MB(s1.rss),
      rssAnonMB: MB(s1.anon),
      rssFileMB: MB(s1.file),
      peakMB: MB(s1.hwm),
      cpuPercent: Math.round(((100 * (c1 - c0)) / (seconds * 1e9)) * 1000) / 1000,
      ...(own.includes('--smaps') ? { smapsMB: smaps(agent.pid) } : {}),
      ...(own.includes('--rss-map') ? { rssMap: rssMap(agent.pid) } : {}),
    }),
  );
} finally {
  await ds.stop();
  await target.proc.stop();
}
