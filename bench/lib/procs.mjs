// Process helpers for the benchmark: spawn and await log lines, CPU time and RSS from /proc.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

const CLK_TCK = 100; // Linux USER_HZ
const PAGE = 4096;

/** Every child still running; killed when the driver exits, however it exits. */
const live = new Set();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

/** A long-running child whose output lines can be awaited. */
export class Proc {
  constructor(cmd, args, opts = {}) {
    this.name = opts.name ?? cmd;
    this.lines = [];
    this.waiters = [];
    this.child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const s of [this.child.stdout, this.child.stderr]) {
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    live.add(this.child);
    this.exited = once(this.child, 'exit').then(([code, sig]) => (live.delete(this.child), code ?? sig));
  }
  get pid() {
    return this.child.pid;
  }
  onLine(line) {
    if (this.lines.length < 5000) this.lines.push(line);
    this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
  }
  waitFor(pred, timeoutMs = 20_000) {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: timed out; output:\n${this.lines.slice(-20).join('\n')}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      void this.exited.then((c) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${c}); output:\n${this.lines.slice(-20).join('\n')}`));
      });
    });
  }
  waitForLog(msg, timeoutMs) {
    return this.waitFor((l) => l.includes(`"msg":"${msg}"`), timeoutMs);
  }
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

export async function run(cmd, args) {
  const p = new Proc(cmd, args);
  const code = await p.exited;
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${code}):\n${p.lines.join('\n')}`);
  return p.lines;
}

/** Minor page faults of `pid` (and its living descendants) so far: pages the kernel had to map in. */
export function minorFaults(pid) {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      total += Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]); // minflt: field 10, the 8th after the name
    } catch {
      /* gone */
    }
  }
  return total;
}

/** utime+stime (+ reaped children) of a process and its live descendants, in ns. */
export function cpuNs(pid) {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields after the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
      total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * (1e9 / CLK_TCK);
    } catch {
      /* gone */
    }
  }
  return total;
}

/** Resident set size of one process in bytes. */
export function rss(pid) {
  const statm = readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ');
  return Number(statm[1]) * PAGE;
}

/** The living descendants of `pid` (children, their children, ...), from /proc. */
export function descendants(pid) {
  const out = [];
  let kids = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const c = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (c) kids.push(...c.split(' ').map(Number));
    }
  } catch {
    return out;
  }
  for (const k of kids) out.push(k, ...descendants(k));
  return out;
}

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  return port;
}

export async function waitForPort(port, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}
