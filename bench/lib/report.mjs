// The issue's targets checked against a run, and the Markdown table of a run.
import { fmt, fmtRange, pairedRatio } from './stats.mjs';

const KB = 1000;
const MB = 1e6;

/** Each target: what it asks, the measured value, and whether this run met it. */
export function targets(out) {
  const d = out.results.devstreams;
  const ssh = out.results['ssh -L'];
  const dir = out.results.direct;
  if (!d) return [];
  const t = [];
  const add = (name, want, value, met) => t.push({ name, want, value, met });
  if (ssh) {
    for (const k of ['up1', 'down1']) {
      const ratio = pairedRatio(d.throughput[k], ssh.throughput[k]);
      add(`one stream ${k === 'up1' ? 'up' : 'down'} vs ssh -L`, '>= 1.0x', `${ratio.toFixed(2)}x`, ratio >= 1);
    }
    for (const k of ['up8', 'down8']) {
      const ratio = pairedRatio(d.throughput[k], ssh.throughput[k]);
      add(`8 streams ${k === 'up8' ? 'up' : 'down'} vs ssh -L (8 streams)`, '>= 1.5x', `${ratio.toFixed(2)}x`, ratio >= 1.5);
    }
  }
  const cs = d.computers?.paths;
  if (cs?.['ssh -L']) {
    const share = d.computers.shares.device;
    for (const k of ['up1', 'down1']) {
      const ratio = pairedRatio(cs.devstreams[k].mbps, cs['ssh -L'][k].mbps);
      add(`one stream ${k === 'up1' ? 'up' : 'down'} vs ssh -L, each party a computer of its own (${share} of a core)`, '>= 1.0x', `${ratio.toFixed(2)}x`, ratio >= 1);
    }
  }
  if (dir) {
    const a50 = d.rttUs.p50.median - dir.rttUs.p50.median;
    const a99 = d.rttUs.p99.median - dir.rttUs.p99.median;
    add('RTT added over direct, p50', '< 300 us', `${fmt(a50)} us`, a50 < 300);
    add('RTT added over direct, p99', '< 2000 us', `${fmt(a99)} us`, a99 < 2000);
  }
  if (d.setup) {
    add('set-up p50', '< 10 ms', `${fmt(d.setup.p50, 1)} ms`, d.setup.p50 < 10);
    add('set-up p99', '< 50 ms', `${fmt(d.setup.p99, 1)} ms`, d.setup.p99 < 50);
  }
  add(`set-up rate, ${out.config.inflight} in flight`, '>= 300/s', `${fmt(d.setupRate.median)}/s`, d.setupRate.median >= 300);
  if (d.concurrency) {
    const c = d.concurrency;
    const per = (c.peak.agent - c.before.agent) / c.streams;
    add(`${c.streams} concurrent streams, errors`, '0', String(c.failed + d.errors.length), c.failed + d.errors.length === 0);
    add('agent RSS per open stream', '< 100 KB', `${fmt(per / KB, 1)} KB`, per < 100 * KB);
  }
  if (d.idleExe) add('agent idle RSS, fresh: the executable, started cold', '< 60 MB', `${fmt(d.idleExe.rssEnd / MB, 1)} MB`, d.idleExe.rssEnd < 60 * MB);
  if (d.idleExeAfterWork) add('agent idle RSS, after work: the executable', '< 60 MB', `${fmt(d.idleExeAfterWork.rssEnd / MB, 1)} MB`, d.idleExeAfterWork.rssEnd < 60 * MB);
  if (d.idleFresh) add('agent idle RSS, fresh: node dist/devstreams.mjs', '< 60 MB', `${fmt(d.idleFresh.rssEnd / MB, 1)} MB`, d.idleFresh.rssEnd < 60 * MB);
  if (d.idle) {
    add('agent idle RSS, after the run', '< 60 MB', `${fmt(d.idle.rssEnd / MB, 1)} MB`, d.idle.rssEnd < 60 * MB);
    add('agent idle CPU', '< 0.5% of a core', `${fmt(d.idle.cpuPercent, 3)} %`, d.idle.cpuPercent < 0.5);
  }
  return t;
}

/** The name that comes up most often (the busiest process of most runs). */
function mostOften(names) {
  const n = new Map();
  for (const x of names) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
}

export function markdown(out) {
  const names = Object.keys(out.results);
  const R = out.results;
  const row = (label, f) => `| ${label} | ${names.map((n) => f(R[n], n)).join(' | ')} |`;
  const ratio = (v, base) => (base ? ` · ${pairedRatio(v, base).toFixed(2)}x ssh` : '');
  const ssh = R['ssh -L'];
  const m = out.machine;
  const lines = [
    `Run ${out.date.slice(0, 16).replace('T', ' ')} UTC${out.quick ? ' (--quick)' : ''}, ${out.durationS} s; ${m.cores} x ${m.cpu}, ${m.memGiB} GiB, Node ${m.node}, Linux ${m.kernel}; load average before ${m.loadavgBefore.map((x) => x.toFixed(1)).join(' ')}, after ${m.loadavgAfter.map((x) => x.toFixed(1)).join(' ')}.`,
    `Median of ${out.config.runs} run(s), (min–max); a ratio to ssh -L is the median of the runs' own ratios, each run measuring the two seconds apart. MB = 10^6 bytes. CPU ns/B: user+system CPU time of the tunnel's own processes per byte carried. ` +
      `Each transfer, ping-pong and set-up series stops early after ${out.config.xferMaxS} s, ${out.config.pingMaxS} s and ${out.config.setupMaxS} s (bytes per transfer this run: ` +
      `${fmt(Math.min(...Object.values(R).map((r) => r.bytesPerTransfer.min)) / 2 ** 20)}-${fmt(Math.max(...Object.values(R).map((r) => r.bytesPerTransfer.max)) / 2 ** 20)} MiB).`,
    '',
    `| | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---:').join('|')}|`,
    row(`1 stream up, MB/s (up to ${fmt(out.config.oneBytes / 2 ** 20)} MiB)`, (r) => fmtRange(r.throughput.up1) + ratio(r.throughput.up1, ssh?.throughput.up1)),
    row('1 stream down, MB/s', (r) => fmtRange(r.throughput.down1) + ratio(r.throughput.down1, ssh?.throughput.down1)),
    row(`8 streams up, MB/s total (8 x up to ${fmt(out.config.eightEach / 2 ** 20)} MiB)`, (r) => fmtRange(r.throughput.up8) + ratio(r.throughput.up8, ssh?.throughput.up8)),
    row('8 streams down, MB/s total', (r) => fmtRange(r.throughput.down8) + ratio(r.throughput.down8, ssh?.throughput.down8)),
    row('CPU ns/B, 1 stream up / down', (r) => (r.cpuNsPerByte ? `${fmt(r.cpuNsPerByte.up1.median, 2)} / ${fmt(r.cpuNsPerByte.down1.median, 2)}` : '–')),
    row('device side CPU ns/B, 1 stream up / down (the agent; sshd; the last hop)', (r) => (r.deviceCpuNsPerByte ? `${fmt(r.deviceCpuNsPerByte.up1.median, 2)} / ${fmt(r.deviceCpuNsPerByte.down1.median, 2)}` : '–')),
    row('busiest process CPU ns/B, 1 stream up / down (with a core each, as on three computers, a stream carries at most 1,000 / this MB/s)', (r) => {
      const b = r.busiestCpuNsPerByte;
      if (!b) return '–';
      const one = (k) => `${fmt(b[k].median, 2)} ${mostOften(b[k].names)}`;
      const sb = ssh?.busiestCpuNsPerByte;
      // The most a stream could carry, against ssh -L's: the inverse ratio of the two busiest processes' CPU per byte.
      const vs = sb && r !== ssh ? ` · ${pairedRatio(sb.up1, b.up1).toFixed(2)}x / ${pairedRatio(sb.down1, b.down1).toFixed(2)}x ssh` : '';
      return `${one('up1')} / ${one('down1')}${vs}`;
    }),
    row('CPU ns/B, 8 streams up / down', (r) => (r.cpuNsPerByte ? `${fmt(r.cpuNsPerByte.up8.median, 2)} / ${fmt(r.cpuNsPerByte.down8.median, 2)}` : '–')),
    row(`1-byte RTT p50, us (up to ${fmt(out.config.pings)} pings per run)`, (r) => fmtRange(r.rttUs.p50)),
    row('pings per run', (r) => r.rttUs.pings.map((n) => fmt(n)).join(', ')),
    row('1-byte RTT p99, us', (r) => fmtRange(r.rttUs.p99)),
    row('RTT added over direct p50 / p99, us', (r) =>
      R.direct && r !== R.direct ? `${fmt(r.rttUs.p50.median - R.direct.rttUs.p50.median)} / ${fmt(r.rttUs.p99.median - R.direct.rttUs.p99.median)}` : '–'),
    row(`set-up p50 / p99, ms (up to ${fmt(out.config.setups)} streams, connect to first byte back)`, (r) => (r.setup ? `${fmt(r.setup.p50, 1)} / ${fmt(r.setup.p99, 1)} (${fmt(r.setup.n)} streams)` : '–')),
    row(`set-up rate, streams/s (${out.config.inflight} in flight)`, (r) => fmtRange(r.setupRate)),
    row('CPU ms per stream set-up (tunnel processes)', (r) => (r.setupCpuMs ? fmt(r.setupCpuMs.median, 2) : '–')),
    row('errors', (r) => String(r.errors.length)),
  ];
  const d = R.devstreams;
  if (d?.concurrency) {
    const c = d.concurrency;
    lines.push(
      '',
      `devstreams, ${fmt(c.streams)} streams open at once${c.freshStack ? ' (a hub, agent and forward started for this test)' : ''}, ${fmt(c.bytesEach)} checked bytes each way per stream: ${c.failed} failed. ` +
        `RSS before / at peak: agent ${fmt(c.before.agent / MB, 1)} / ${fmt(c.peak.agent / MB, 1)} MB (${fmt((c.peak.agent - c.before.agent) / c.streams / KB, 1)} KB per stream), ` +
        `hub ${fmt(c.before.hub / MB, 1)} / ${fmt(c.peak.hub / MB, 1)} MB (${fmt((c.peak.hub - c.before.hub) / c.streams / KB, 1)} KB per stream), ` +
        `forward ${fmt(c.before.forward / MB, 1)} / ${fmt(c.peak.forward / MB, 1)} MB.`,
    );
  }
  const warnings = Object.entries(d?.concurrency?.warnings ?? {});
  if (warnings.length) lines.push('', 'Warnings logged during the concurrency test:', ...warnings.slice(0, 8).map(([k, n]) => `- ${n} x ${k}`));
  if (d?.idleExe) {
    const x = d.idleExe;
    lines.push('', `devstreams agent as the single executable (${x.exe}), started with its file out of the page cache as after a boot, idle for ${x.seconds} s, fresh: RSS ${fmt(x.rssEnd / MB, 1)} MB (${fmt(x.file / MB, 1)} file-backed, ${fmt(x.anon / MB, 1)} anonymous), CPU ${fmt(x.cpuPercent, 3)} % of one core.`);
  }
  if (d?.idleExeAfterWork) {
    const x = d.idleExeAfterWork;
    lines.push('', `The same executable, started cold, after 256 MiB up and down on one stream and then 1,000 concurrent checked streams (\`bench/idle.mjs --load\`; peak ${fmt(x.peak / MB, 1)} MB), idle for ${x.seconds} s: RSS ${fmt(x.rssEnd / MB, 1)} MB (${fmt(x.file / MB, 1)} file-backed, ${fmt(x.anon / MB, 1)} anonymous), CPU ${fmt(x.cpuPercent, 3)} % of one core.`);
  }
  if (d?.idleFresh) lines.push('', `devstreams agent idle for ${d.idleFresh.seconds} s, fresh (control channel up, never carried a stream): RSS ${fmt(d.idleFresh.rssEnd / MB, 1)} MB, CPU ${fmt(d.idleFresh.cpuPercent, 3)} % of one core.`);
  if (d?.idle) lines.push('', `devstreams agent idle for ${d.idle.seconds} s after the run (control channel up, no streams): RSS ${fmt(d.idle.rssEnd / MB, 1)} MB, CPU ${fmt(d.idle.cpuPercent, 3)} % of one core.`);
  if (d?.wanSetup) {
    const w = d.wanSetup;
    lines.push('', `devstreams set-up with a ${w.rttMs} ms round trip to the hub (for the agent and the service side alike, through bench/lib/delay-proxy.mjs), ${w.n} streams: ` +
      `p50 ${fmt(w.p50)} ms (${fmt(w.p50 / w.rttMs, 1)} round trips), p90 ${fmt(w.p90)} ms.`);
  }
  if (d?.wanBulk) {
    const w = d.wanBulk;
    const mb = (x) => `${fmt(x.up, 1)} up / ${fmt(x.down, 1)} down MB/s`;
    lines.push('', `One stream with a ${w.rttMs} ms round trip (the same delay proxy; up to ${fmt(w.devstreams.bytesUp / MB)} MB each way): devstreams ${mb(w.devstreams)}` +
      (w.ssh ? `, ssh -L ${mb(w.ssh)} (${fmt(w.devstreams.up / w.ssh.up, 2)}x / ${fmt(w.devstreams.down / w.ssh.down, 2)}x).` : '.'));
  }
  if (d?.computers) {
    const c = d.computers;
    const cs = c.paths;
    const sh = c.shares;
    // The computer that used the most of its share: the one that held the stream back.
    const busiest = (f) => Object.entries(f.load).sort((a, b) => b[1] - a[1])[0][0];
    const mb = (p) => `${fmtRange(p.up1.mbps)} up / ${fmtRange(p.down1.mbps)} down MB/s (the busiest computer ${busiest(p.up1)} / ${busiest(p.down1)})`;
    lines.push('', `One stream with each party on a computer of its own: the user's (the load generator and the service side), the hub, and the device (the device side and the target), ` +
      `each held to ${sh.user === sh.hub && sh.hub === sh.device ? `${sh.user} of a core` : `user ${sh.user}, hub ${sh.hub}, device ${sh.device} of a core`} by a CPU quota (bench/computers.mjs; median of ${c.runs}, up to ${fmt(c.bytes / 2 ** 20)} MiB each way): ` +
      `devstreams ${mb(cs.devstreams)}` +
      (cs['ssh -L'] ? `; ssh -L ${mb(cs['ssh -L'])} (devstreams ${fmt(pairedRatio(cs.devstreams.up1.mbps, cs['ssh -L'].up1.mbps), 2)}x / ${fmt(pairedRatio(cs.devstreams.down1.mbps, cs['ssh -L'].down1.mbps), 2)}x).` : '.'));
  }
  if (d?.noAes) {
    const x = d.noAes;
    const mb = (r) => `${fmtRange(r.up)} up / ${fmtRange(r.down)} down MB/s, device side ${fmt(r.deviceNsUp.median, 2)} / ${fmt(r.deviceNsDown.median, 2)} CPU ns/B`;
    lines.push('', `One stream with the device side on a CPU without AES instructions (a Raspberry Pi 3 or 4 stand-in: ${Object.entries(x.env).map(([k, v]) => `${k}=${v}`).join(' ')} ` +
      `for the agent and for sshd alone; median of ${x.runs}, up to ${fmt(x.bytes / 2 ** 20)} MiB each way): devstreams ${mb(x.devstreams)} (the agent's relay connection: ${x.devstreams.cipher ?? 'cipher not logged'})` +
      (x.devstreamsAesGcm ? `; devstreams with \`hub.tlsCipher: aes-gcm\`, as before the agent chose, ${mb(x.devstreamsAesGcm)} (${x.devstreamsAesGcm.cipher ?? 'cipher not logged'})` : '') +
      (x.ssh ? `; ssh -L ${mb(x.ssh)} (devstreams ${fmt(pairedRatio(x.devstreams.up, x.ssh.up), 2)}x / ${fmt(pairedRatio(x.devstreams.down, x.ssh.down), 2)}x).` : '.'));
  }
  if (out.targets.length) {
    lines.push('', '| target | wanted | this run | met |', '|---|---|---|---|');
    for (const t of out.targets) lines.push(`| ${t.name} | ${t.want} | ${t.value} | ${t.met ? 'yes' : '**no**'} |`);
  }
  const errs = Object.entries(R).flatMap(([n, r]) => r.errors.slice(0, 5).map((e) => `${n}: ${e}`));
  if (errs.length) lines.push('', 'First errors:', ...errs.map((e) => `- ${e}`));
  return lines.join('\n') + '\n';
}
